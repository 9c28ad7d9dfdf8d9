"""Processes and temp dirs, always cleaned up: every process started through spawn() is recorded by
PID and dies with the test runner (PR_SET_PDEATHSIG); kill_all() and remove_tmpdirs() (set
PC_KEEP_TMP=1 to keep the dirs for a post-mortem) run at the end, also when a test fails, times out
or the runner is interrupted (_on_signal)."""

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import threading

from .env import log

_procs = []  # every Popen started through spawn(), in start order
_tmpdirs = []
_lock = threading.Lock()

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None


def _die_with_parent():
    # If the test runner itself is killed (ctest timeout), take the child down too.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(args, stdout=None, stderr=None, stdin=subprocess.DEVNULL, env=None, cwd=None):
    """Popen that is recorded for cleanup. Call from the main thread only."""
    proc = subprocess.Popen(args, stdout=stdout, stderr=stderr, stdin=stdin, env=env, cwd=cwd,
                            preexec_fn=_die_with_parent)
    with _lock:
        _procs.append(proc)
    return proc


def stacks(pid):
    """Every thread's stack of a live process (gdb in batch mode), or why there are none."""
    gdb = shutil.which("gdb")
    if not gdb:
        return "(no gdb: no stacks)"
    try:
        r = subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt 30"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        return r.stdout[-20000:] or r.stderr[-2000:]
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"(gdb failed: {e})"


def stop_process(proc, timeout=10.0, on_hang=None):
    """SIGTERM, then SIGKILL after `timeout` s. Returns the exit code (negative: signal). A process
    still running at the deadline is passed to on_hang(proc) first (e.g. to record its stacks)."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if on_hang is not None:
                on_hang(proc)
            proc.kill()
            proc.wait()
    with _lock:
        if proc in _procs:
            _procs.remove(proc)
    return proc.returncode


def kill_all():
    with _lock:
        procs = list(reversed(_procs))
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    with _lock:
        _procs.clear()


def make_tmpdir(tag):
    path = tempfile.mkdtemp(prefix=f"pc-{tag}-")
    with _lock:
        _tmpdirs.append(path)
    return path


def remove_tmpdirs():
    with _lock:
        dirs = list(_tmpdirs)
        _tmpdirs.clear()
    if os.environ.get("PC_KEEP_TMP"):
        for d in dirs:
            log(f"kept {d}")
        return
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def _cleanup():
    kill_all()
    remove_tmpdirs()


def _on_signal(signum, _frame):
    _cleanup()
    os._exit(128 + signum)
