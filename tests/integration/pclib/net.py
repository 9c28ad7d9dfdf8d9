"""Loopback ports: a free one, whether one is open, waiting for a process to listen on one."""

import random
import socket
import time

_given = set()
_rng = random.SystemRandom()  # not the shared generator: a test may seed that one


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


def free_port():
    """A loopback port nobody listens on, never the same twice in one test process. Random, so
    test processes running side by side rarely try the same one."""
    first, end = _outside_ephemeral()
    for _ in range(1000):
        port = _rng.randrange(first, end)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
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
