"""A real redis-server for the tests that share state through Redis: on a free loopback port, no
persistence, stopped (and restartable) by the test."""

import os
import subprocess

from .net import free_port, wait_port
from .processes import spawn, stop_process


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.log = os.path.join(workdir, f"redis-{self.port}.log")
        self.start()

    def start(self):
        self.proc = spawn(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--logfile", self.log, "--protected-mode", "no"])
        wait_port(self.port, self.proc, what="redis-server")

    def stop(self):
        stop_process(self.proc)

    def store(self, **more):
        """A plugin's `store:` map for this server, with a test secret."""
        s = {"type": "redis", "address": f"127.0.0.1:{self.port}", "timeout_ms": 50,
             "secret": "test-deployment-secret-0123456789"}
        s.update(more)
        return s

    def cli(self, *args):
        """redis-cli against this server; its stdout, stripped."""
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=10).stdout.strip()
