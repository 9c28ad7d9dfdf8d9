"""Loopback ports: a free one, whether one is open, waiting for a process to listen on one."""

import atexit
import os
import random
import socket
import tempfile
import time

_given = set()
_rng = random.SystemRandom()  # not the shared generator: a test may seed that one
# Ports handed out by any test process on this machine, a file each holding the owner's pid: test
# files run side by side, and one's port must not be another's until its owner is gone.
_CLAIMS = os.path.join(tempfile.gettempdir(), "portcullis-test-ports")


def _outside_ephemeral():
    """Ports the kernel never picks for bind(0) or an outgoing connection: a port taken from its
    ephemeral range could be handed to the next caller, or to a client socket, before the process
    it was meant for binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return (10000, low) if low - 10000 >= 4096 else (high + 1, 65536)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(port):
    """Claims the port for this process, machine-wide; False when a live process holds it."""
    path = os.path.join(_CLAIMS, str(port))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    owner = int(f.read() or "0")
            except (OSError, ValueError):
                return False  # being written: taken
            if owner and _alive(owner):
                return False
            try:
                os.unlink(path)  # its owner is gone
            except OSError:
                return False
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


@atexit.register
def _release():
    for port in _given:
        try:
            os.unlink(os.path.join(_CLAIMS, str(port)))
        except OSError:
            pass


def free_port():
    """A loopback port nobody listens on and no other test process was given, never the same twice
    in one test process."""
    first, end = _outside_ephemeral()
    os.makedirs(_CLAIMS, exist_ok=True)
    for _ in range(1000):
        port = _rng.randrange(first, end)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not _claim(port):
            continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {first}..{end - 1}")


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port, proc=None, timeout=20.0, what="process"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {port}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on 127.0.0.1:{port} after {timeout:.0f} s")
