#!/usr/bin/python3
"""Every configuration key the code accepts is documented in docs/configuration.md.

The keys are read from the parsers themselves, so a key added to the code without documentation
fails this test:
  - string literals in initialisers of arrays named `*keys[]` or `known[]` (the tables the core's
    and the plugins' unknown-key checks use), in core/config.c, the access policy's module
    (core/access/, which owns each origin's `access` map) and every plugin source;
  - the `.key = "..."` entries of the pc_conf_key arrays plugins declare in their descriptors
    (which the core checks every plugin config against);
  - key lists written out in "valid keys: a, b, c" error messages;
  - keys a parser compares one by one with strcmp (listed below per file).
A key counts as documented when it appears as a whole word inside a backtick span anywhere in
docs/configuration.md (`max_message_bytes`, or as part of `jwt.leeway_s` or `{cert, key}`).

Usage: config_keys.py SOURCE_DIR
"""

import os
import re
import sys

# Key tables that are not configuration keys: the fields of a Lua rule table and of `req.tls`
# in Lua rules (documented in docs/lua-rules.md), and the request cases of `portcullis rules test`
# (core/rules_test.c is not scanned at all).
NOT_CONFIG = {
    ("plugins/lua/sandbox.c", "rule_keys"),
    ("plugins/lua/bridge.c", "keys"),
}

# Parsers that compare keys with strcmp instead of a table: the tokens file of an access policy
# (service_token.tokens_file).
STRCMP_KEYS = {
    "core/access/tokens.c": re.compile(r'strcmp\(\s*key\s*,\s*"([A-Za-z_][A-Za-z0-9_]*)"\s*\)'),
}

# Each of these must give keys; none means the extractor no longer understands the source.
MUST_GIVE_KEYS = [
    "core/config.c",
    "plugins/bot/bot.c",
    "plugins/lua/lua_plugin.c",
    "plugins/modsecurity/waf_config.c",
    "plugins/example/example.c",
    "core/access/policy.c",
    "core/access/tokens.c",
]

MIN_KEYS = 60

TABLE = re.compile(r"\bchar\s*\*\s*const\s+(\w*keys|known)\s*\[\s*\w*\s*\]\s*=\s*\{(.*?)\}\s*;", re.S)
STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
CONF_KEY = re.compile(r'\.key\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)"')
VALID_KEYS = re.compile(r"valid keys: ([^)\"]*)")
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def strip_comments(text):
    # Comments may quote keys that are no longer accepted; only code counts. String literals are
    # kept intact so a "/*" inside one is not taken for a comment.
    out, i, n = [], 0, len(text)
    pat = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|/\*.*?\*/|//[^\n]*', re.S)
    for m in pat.finditer(text):
        out.append(text[i:m.start()])
        tok = m.group(0)
        # Blank a comment out but keep its newlines, so line numbers stay right for the report.
        out.append(tok if tok[0] in "\"'" else re.sub(r"[^\n]", " ", tok))
        i = m.end()
    out.append(text[i:n])
    return "".join(out)


def sources(root):
    yield "core/config.c"
    for top in ("core/access", "plugins"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if f.endswith(".c"):
                    yield os.path.relpath(os.path.join(dirpath, f), root)


def extract(root):
    """Returns ({key: set of "file:line" places it was found}, {file: keys found there})."""
    found = {}
    per_file = {}

    def add(key, rel, code, pos):
        if KEY.match(key):
            found.setdefault(key, set()).add("%s:%d" % (rel, code.count("\n", 0, pos) + 1))
            per_file[rel] = per_file.get(rel, 0) + 1

    for rel in sorted(set(sources(root))):
        with open(os.path.join(root, rel), encoding="utf-8") as f:
            code = strip_comments(f.read())
        for m in TABLE.finditer(code):
            name = m.group(1)
            if (rel, name) in NOT_CONFIG:
                continue
            for s in STRING.finditer(m.group(2)):
                add(s.group(1), rel, code, m.start(2) + s.start())
        for s in STRING.finditer(code):
            v = VALID_KEYS.search(s.group(1))
            if v:
                for k in v.group(1).split(","):
                    k = k.strip()
                    if k and "%" not in k:
                        add(k, rel, code, s.start())
        for m in CONF_KEY.finditer(code):
            add(m.group(1), rel, code, m.start())
        pat = STRCMP_KEYS.get(rel)
        if pat:
            for m in pat.finditer(code):
                add(m.group(1), rel, code, m.start())
    return found, per_file


def documented_words(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # Fenced code blocks are examples, not documentation of a key; drop them before looking for
    # inline code spans.
    text = re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.S | re.M)
    words = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        words.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span))
    return words


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root = sys.argv[1]
    found, per_file = extract(root)
    failed = False
    for rel in MUST_GIVE_KEYS:
        if not per_file.get(rel):
            print("no keys extracted from %s: the extractor no longer matches its source" % rel)
            failed = True
    if len(found) < MIN_KEYS:
        print("only %d keys extracted (expected at least %d): the extractor is broken" % (len(found), MIN_KEYS))
        failed = True
    doc = os.path.join(root, "docs", "configuration.md")
    if not os.path.isfile(doc):
        print("%s does not exist" % doc)
        return 1
    words = documented_words(doc)
    missing = sorted(k for k in found if k not in words)
    for k in missing:
        print("not documented in docs/configuration.md: `%s` (from %s)" % (k, ", ".join(sorted(found[k]))))
    print("checked %d configuration keys from %d source files; %d missing" % (len(found), len(per_file), len(missing)))
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
