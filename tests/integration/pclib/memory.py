"""Memory of a process under test: RSS from /proc, the growth over a stretch of time (RssWatch), and
whether the binary was built with AddressSanitizer (its figures are then inflated)."""

import threading

from .env import BINARY


def proc_status_kib(pid, key):
    """A size line (VmRSS, VmHWM, ...) of /proc/PID/status in KiB; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib(pid):
    kib = proc_status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024.0


class RssWatch:
    """The growth of a process's resident memory over a stretch of time: the peak (VmHWM, reset at
    start via /proc/PID/clear_refs, plus samples every 50 ms) minus the RSS at start, in MiB."""

    def __init__(self, pid):
        self.pid = pid
        self.stopping = threading.Event()
        self.base = rss_mib(pid) or 0.0
        self.peak = self.base
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.hwm = True
        except OSError:
            self.hwm = False
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.stopping.wait(0.05):
            v = rss_mib(self.pid)
            if v is not None:
                self.peak = max(self.peak, v)

    def stop(self):
        self.stopping.set()
        self.thread.join(2)
        if self.hwm:
            kib = proc_status_kib(self.pid, "VmHWM")
            if kib is not None:
                self.peak = max(self.peak, kib / 1024.0)
        self.growth = self.peak - self.base
        return self.growth


_sanitized = {}


def binary_sanitized(path=None):
    """True when the binary was built with AddressSanitizer (memory figures are then inflated)."""
    path = path or BINARY
    if path not in _sanitized:
        try:
            with open(path, "rb") as f:
                _sanitized[path] = b"__asan_init" in f.read()
        except OSError:
            _sanitized[path] = False
    return _sanitized[path]
