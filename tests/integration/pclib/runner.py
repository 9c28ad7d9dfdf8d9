"""A test file run on its own: `python3 tests/integration/test_foo.py [test_a test_b] [pytest options]`
runs that file under pytest, as ctest does (conftest.py holds the setup, time limit and teardown
checks), with each test's output shown as it runs."""

import os
import re
import sys

# Options of pytest whose value is the next argument (which is then not a test name).
_VALUE_OPTIONS = {"-k", "-m", "-p", "-o", "-W", "-c", "--tb", "--durations", "--maxfail", "--deselect",
                  "--rootdir", "--junitxml", "--log-level", "--show-capture", "--override-ini"}


def main(namespace=None, setup=None):
    """Runs pytest on the calling test file and exits with its status. `namespace`: the file's
    globals() (or its path). `setup` is not used: conftest.py calls the file's setup() itself.
    Bare test names on the command line select those tests; other arguments go to pytest."""
    import pytest

    if isinstance(namespace, str):
        path = namespace
    else:
        path = (namespace or {}).get("__file__") or sys.argv[0]
    path = os.path.abspath(path)
    args, selected, after_option = [], [], False
    for arg in sys.argv[1:]:
        if not after_option and re.fullmatch(r"test_\w+", arg):
            selected.append(f"{path}::{arg}")
        else:
            args.append(arg)
        after_option = arg in _VALUE_OPTIONS
    sys.exit(pytest.main(["-p", "no:cacheprovider", "-v", "-s"] + args + (selected or [path])))
