"""Where things are and how long to wait: the binary under test, the source and build trees, the
gRPC origin script, the timing scale for slow machines (PC_TIME_SCALE) and the per-test time limit
(PC_TEST_TIMEOUT). Also log() and wait_until(), the polling every timing assertion goes through."""

import os
import sys
import time

# tests/integration/ (this package's parent): grpc_origin.py lives there.
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_DIR = os.environ.get("PC_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("PC_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
BINARY = os.environ.get("PC_BINARY") or os.path.join(BUILD_DIR, "portcullis")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
GEN_CERTS = os.path.join(SOURCE_DIR, "scripts", "gen-certs")
ORIGIN_SCRIPT = os.path.join(HERE, "grpc_origin.py")

MAX_MESSAGE = 16 << 20
TEST_TIMEOUT = float(os.environ.get("PC_TEST_TIMEOUT", "120"))
# Scale for timing limits in assertions (set e.g. PC_TIME_SCALE=3 for very slow machines).
TIME_SCALE = float(os.environ.get("PC_TIME_SCALE", "1"))

sys.path.insert(0, HERE)


def log(msg):
    print(msg, flush=True)


def wait_until(predicate, timeout=5.0, interval=0.05):
    deadline = time.monotonic() + timeout * TIME_SCALE
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
