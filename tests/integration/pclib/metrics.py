"""The admin endpoint: a plain HTTP/1.1 GET, and /metrics (Prometheus text) scraped and parsed."""

import re

from .env import TIME_SCALE


def http_get(port, path, timeout=5.0):
    """A plain HTTP/1.1 GET to 127.0.0.1:port (the admin endpoint); returns (status, body text)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * TIME_SCALE)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


_METRIC_LINE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_METRIC_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    """Prometheus text exposition -> [(name, {label: value}, float)]. Raises AssertionError on a
    sample line that does not parse."""
    samples = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            raise AssertionError(f"unparseable metrics line: {line!r}")
        labels = {}
        rest = m.group(2) or ""
        pos = 0
        while pos < len(rest):
            lm = _METRIC_LABEL.match(rest, pos)
            if not lm or lm.end() == pos:
                raise AssertionError(f"unparseable labels in metrics line: {line!r}")
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), lm.group(2))
            pos = lm.end()
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric_sum(samples, name, **labels):
    """Sum of the samples called `name` whose labels include `labels`; None when none matches."""
    values = [v for n, ls, v in samples if n == name and all(ls.get(k) == want for k, want in labels.items())]
    return sum(values) if values else None


def scrape_metrics(port, timeout=5.0):
    """GET /metrics from the admin endpoint, parsed (see parse_metrics)."""
    status, body = http_get(port, "/metrics", timeout=timeout)
    if status != 200:
        raise AssertionError(f"/metrics answered {status}: {body[:200]!r}")
    return parse_metrics(body)
