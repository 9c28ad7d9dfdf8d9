"""pytest plumbing for the integration tests.

Each test file defines setup(), which starts what its tests need and returns a pclib.Stack, and
test_* functions taking that stack as `st` (or nothing). Here:

- `st` is a module-scoped autouse fixture: the file's setup() runs once, before its first test
  (also when that test takes no argument); when it fails, every test of the file errors with its
  exception. At the end of the file, st.close() stops the proxies and origins: each problem it
  returns (a proxy that had died or exited uncleanly, a sanitizer report in its stderr) fails the
  teardown; then every process still running is killed and the temp dirs removed (PC_KEEP_TMP=1
  keeps them).
- Tests run in the order they are written (pytest's order); a failure does not stop the others.
- After a test that passed, st.healthy() must hold (the proxy and the origins still running), else
  the test fails. After a failed test, the stack's logs are added to its report and, if the proxy
  is gone, it is restarted for the remaining tests.
- Each test has PC_TEST_TIMEOUT (default 120) x PC_TIME_SCALE seconds: past that, the run prints
  where the test was and the logs, kills everything and exits with status 1.
- SIGTERM and SIGINT kill every process started and remove the temp dirs, then exit (128 + the
  signal's number), as soon as they come.

tests/integration/pytest.ini turns off pytest's nose support, which would call a module's setup()
as a setup_module of its own.
"""

import os
import signal
import sys
import threading
import time
import traceback

import pytest

import pclib
from pclib import processes


def pytest_configure(config):
    if config.pluginmanager.has_plugin("nose"):
        raise pytest.UsageError("the integration tests need pytest's nose plugin off (-p no:nose; "
                                "tests/integration/pytest.ini says so): it would call each file's setup() again")
    signal.signal(signal.SIGTERM, processes._on_signal)
    signal.signal(signal.SIGINT, processes._on_signal)


def pytest_unconfigure(config):
    processes._cleanup()


@pytest.fixture(scope="module", autouse=True)
def st(request):
    """What the test file's setup() returns (None for a file without setup())."""
    setup = getattr(request.module, "setup", None)
    stack = None
    try:
        if setup is not None:
            t0 = time.monotonic()
            stack = setup()
            pclib.log(f"setup done in {time.monotonic() - t0:.1f} s")
        yield stack
        close = getattr(stack, "close", None)
        problems = list(close() or ()) if close else []
    finally:
        processes._cleanup()
    if problems:
        pytest.fail("teardown:\n" + "\n".join(f"- {p}" for p in problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    limit = pclib.TEST_TIMEOUT * pclib.TIME_SCALE
    fired = threading.Event()
    timer = threading.Timer(limit, _timed_out, args=(item, limit, fired, threading.get_ident()))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        while fired.is_set():  # the watchdog is ending the run
            time.sleep(1)


def _timed_out(item, limit, fired, test_thread):
    fired.set()
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.stop_global_capturing()  # what the test printed goes out first
    lines = [f"\nFAIL {item.nodeid}: timed out after {limit:.0f} s (PC_TEST_TIMEOUT x PC_TIME_SCALE)"]
    frame = sys._current_frames().get(test_thread)
    if frame is not None:
        entries = traceback.extract_stack(frame)
        test_file = str(item.path)
        first = next((i for i, e in enumerate(entries) if e.filename == test_file), 0)
        lines.append("where the test was:\n" + "".join(traceback.format_list(entries[first:])).rstrip())
    stack = getattr(item, "funcargs", {}).get("st")
    if hasattr(stack, "logs"):
        try:
            lines.append(stack.logs())
        except Exception as e:
            lines.append(f"(no logs: {e})")
    print("\n".join(lines), flush=True)
    processes._cleanup()
    os._exit(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("st") if rep.when == "call" else None
    if stack is None:
        return
    healthy = getattr(stack, "healthy", None)
    if rep.passed and healthy is not None:
        broken = healthy()
        if broken:
            rep.outcome = "failed"
            rep.longrepr = _failure(f"the test passed, but then: {broken}")
    if not rep.failed:
        return
    if hasattr(stack, "logs"):
        try:
            rep.sections.append(("logs of the stack", stack.logs()))
        except Exception as e:
            rep.sections.append(("logs of the stack", f"(no logs: {e})"))
    if healthy is not None and healthy():
        try:
            stack.restart_proxy()
            note = "restarted portcullis for the remaining tests"
        except Exception as e:
            note = f"could not restart portcullis: {e}"
        rep.sections.append(("after the failure", note))


def _failure(text):
    """A test report's failure text, as for an AssertionError(text) without a traceback."""
    try:
        raise AssertionError(text)
    except AssertionError:
        return pytest.ExceptionInfo.from_current().getrepr(style="value")
