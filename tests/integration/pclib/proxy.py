"""The proxy under test: `portcullis run -c CONFIG` with its logs captured, and what its exit says
(a crash, an unclean exit after SIGTERM, a sanitizer report)."""

import os
import signal

from .env import BINARY, log
from .logs import tail
from .net import wait_port
from .processes import spawn, stacks, stop_process


class Proxy:
    """portcullis run -c CONFIG; stdout (access log) and stderr captured in the work dir."""

    def __init__(self, config_path, ports, workdir, name="portcullis"):
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(f"portcullis binary not found or not executable: {BINARY}")
        self.config_path = config_path
        self.ports = list(ports)
        self.name = name
        self.out_path = os.path.join(workdir, f"{name}.stdout")
        self.err_path = os.path.join(workdir, f"{name}.stderr")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = spawn([BINARY, "run", "-c", config_path], stdout=self.out, stderr=self.err)
        self.exit_code = None
        try:
            for port in self.ports:
                wait_port(port, self.proc, timeout=30, what="portcullis")
        except Exception:
            self.stop()
            raise

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Stop with SIGTERM; returns a problem description, or None when it exited cleanly."""
        died_before = self.proc.poll() is not None
        hung = []
        code = stop_process(self.proc, timeout=15, on_hang=lambda proc: hung.append(stacks(proc.pid)))
        self.out.close()
        self.err.close()
        self.exit_code = code
        problems = []
        if died_before:
            problems.append(f"{self.name} had exited on its own (code {code})")
        elif hung:
            log(f"--- {self.name} still running 15 s after SIGTERM; its stacks ---\n{hung[0]}\n"
                f"--- its stderr ---\n{tail(self.err_path, 40)}")
            problems.append(f"{self.name} did not exit within 15 s of SIGTERM (stacks and stderr printed above)")
        elif code not in (0, -signal.SIGTERM):
            problems.append(f"{self.name} exited with code {code} after SIGTERM")
        stderr = tail(self.err_path, 100000)
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer"):
            if marker in stderr:
                problems.append(f"{self.name} stderr reports a sanitizer finding ({marker!r})")
                break
        return "; ".join(problems) or None

    def logs(self, lines=60):
        return (f"--- {self.name} stderr (last {lines} lines) ---\n{tail(self.err_path, lines)}\n"
                f"--- {self.name} stdout / access log (last {lines} lines) ---\n{tail(self.out_path, lines)}")
