"""Log files: the tail of a process's log, and the JSON-lines access logs (parsed, waited for)."""

import json

from .env import wait_until


def tail(path, lines=60):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def read_json_lines(path):
    """Every line of a JSON-lines file, parsed; AssertionError naming the first line that is not JSON.
    A missing file reads as no lines."""
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    out = []
    for i, line in enumerate(data.splitlines(), 1):
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{path} line {i} is not JSON: {line[:200]!r}") from None
    return out


def request_seq(entry):
    """The per-worker sequence number in an access-log line's request id ("<worker>-<hex seq>"): the
    order a worker's calls were made in, where the file has them in the order they ended."""
    return int(entry["request_id"].split("-")[1], 16)


def json_lines_matching(path, pred, count=1, timeout=10):
    """The lines of a JSON-lines file (an access log) that match pred, once at least `count` do;
    lines are written as calls end, so a test waits for the ones it counts. AssertionError if
    they do not come."""
    def found():
        lines = [x for x in read_json_lines(path) if pred(x)]
        return lines if len(lines) >= count else None

    lines = wait_until(found, timeout)
    assert lines, f"fewer than {count} lines of {path} match the request:\n{tail(path, 10)}"
    return lines
