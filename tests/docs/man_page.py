#!/usr/bin/python3
"""The man page source (docs/portcullis.8.md) against the code: every command of `portcullis --help`
is in SYNOPSIS and COMMANDS, every signal core/main.c handles is under SIGNALS, and go-md2man
renders it into a page with those sections.

Usage: man_page.py SOURCE_DIR PORTCULLIS_BINARY"""

import re
import subprocess
import sys


def section(text, name):
    m = re.search(rf"^# {name}\n(.*?)(?=^# |\Z)", text, re.M | re.S)
    assert m, f"no section # {name}"
    return m.group(1)


def main():
    source, binary = sys.argv[1:3]
    with open(f"{source}/docs/portcullis.8.md") as f:
        page = f.read()
    usage = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, text=True, check=True).stdout
    commands = set()
    for line in usage.splitlines():
        m = re.match(r"^(?:usage:)?\s+portcullis ((?:[a-z]+ ?)+?|--[a-z]+)(?: -c| [A-Z]|$)", line)
        if m:
            commands.add(m.group(1).strip())
    assert {"run", "check", "rules test", "plugins describe", "--version", "--help"} <= commands, commands
    problems = []
    synopsis, cmds = section(page, "SYNOPSIS"), section(page, "COMMANDS")
    for c in sorted(commands):
        words = r"\s+".join(re.escape(w) for w in c.split())
        if not re.search(rf"\*\*(portcullis\s+)?{words}", synopsis):
            problems.append(f"SYNOPSIS lacks `{c}`")
        if not c.startswith("--") and not re.search(rf"^\*\*{words}", cmds, re.M):
            problems.append(f"COMMANDS lacks `{c}`")
    with open(f"{source}/core/main.c") as f:
        handled = set(re.findall(r"uv_signal_start\([^;]*?\b(SIG[A-Z0-9]+)\)", f.read()))
    assert {"SIGHUP", "SIGTERM", "SIGUSR1"} <= handled, handled
    signals = section(page, "SIGNALS")
    for sig in sorted(handled):
        if f"**{sig}**" not in signals:
            problems.append(f"SIGNALS lacks {sig}")
    assert not problems, "\n".join(problems)
    roff = subprocess.run(["go-md2man"], input=page, stdout=subprocess.PIPE, text=True, check=True).stdout
    assert re.search(r'^\.TH "?portcullis"? "?8"?', roff, re.M), roff[:300]
    for name in ("NAME", "SYNOPSIS", "COMMANDS", "SIGNALS", "FILES"):
        assert re.search(rf'^\.SH "?{name}"?$', roff, re.M), f"rendered page lacks .SH {name}"
    print(f"PASS: {len(commands)} commands and {len(handled)} signals documented in portcullis(8)")


if __name__ == "__main__":
    main()
