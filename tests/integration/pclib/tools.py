"""Command-line clients: curl (no proxy) and openssl s_client, with time limits scaled by TIME_SCALE."""

import subprocess

from .env import TIME_SCALE


def curl(args, timeout=20):
    """curl with no proxy; returns (returncode, stdout, stderr)."""
    r = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", str(int(timeout * TIME_SCALE))] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout * TIME_SCALE + 10)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def s_client(port, args, timeout=15):
    """openssl s_client against 127.0.0.1:port with stdin closed; returns combined output."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}"] + args,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout * TIME_SCALE)
    return r.returncode, r.stdout.decode("utf-8", "replace")
