#!/usr/bin/python3
"""`cmake --install` into a temporary DESTDIR installs all of rules/ (bots, waf, lua) and the example
configuration under <datadir>/portcullis/ (with the descriptors it names) and portcullis(8), the same
files as the source tree, in the layout the plugins
look in: the directories compiled into pc-bot.so (rules/bots) and pc-modsecurity.so (rules/waf) as their
installed defaults exist in what was installed, and the example configuration's relative rules paths
resolve there.

Usage: test_install.py BUILD_DIR SOURCE_DIR"""

import filecmp
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def files_under(root):
    out = set()
    for d, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def baked_paths(so, suffix):
    """The absolute paths ending in suffix that a shared object holds as C strings."""
    with open(so, "rb") as f:
        data = f.read()
    return {m.decode() for m in re.findall(rb"(/[\x21-\x7e]*" + re.escape(suffix.encode()) + rb")\x00", data)}


def main():
    if len(sys.argv) != 3:
        fail(__doc__)
    build, source = (os.path.abspath(a) for a in sys.argv[1:])
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        m = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", f.read(), re.M)
    check(m, "no CMAKE_INSTALL_PREFIX in CMakeCache.txt")
    prefix = m.group(1).rstrip("/")

    dest = tempfile.mkdtemp(prefix="pc-install-")
    try:
        env = dict(os.environ, DESTDIR=dest)
        r = subprocess.run(["cmake", "--install", build], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=120)
        check(r.returncode == 0, f"cmake --install failed:\n{r.stdout}")
        root = dest + prefix

        # Where the plugins look for their installed rules, as compiled in.
        plugins = {}
        for name in ("bot", "modsecurity"):
            found = glob.glob(os.path.join(root, "**", "portcullis", "plugins", f"pc-{name}.so"), recursive=True)
            check(len(found) == 1, f"expected one installed pc-{name}.so under {root}, found {found}")
            plugins[name] = found[0]
        want = {}
        for name, sub in (("bot", "rules/bots"), ("modsecurity", "rules/waf")):
            paths = [p for p in baked_paths(plugins[name], "/portcullis/" + sub) if p.startswith(prefix + "/")]
            check(len(paths) == 1, f"pc-{name}.so holds no single installed {sub} path under {prefix}: {paths}")
            want[name] = paths[0]
            check(os.path.isdir(dest + paths[0]), f"pc-{name}.so looks for its rules in {paths[0]}, "
                  f"which the install did not create (DESTDIR {dest})")
        share = dest + want["bot"][:-len("/rules/bots")]
        check(want["modsecurity"][:-len("/rules/waf")] == want["bot"][:-len("/rules/bots")],
              f"the plugins' rules live under different directories: {want}")
        print(f"installed data directory: {share[len(dest):]}", flush=True)

        # All of rules/, the same files with the same contents.
        src_rules = os.path.join(source, "rules")
        inst_rules = os.path.join(share, "rules")
        have, expect = files_under(inst_rules), files_under(src_rules)
        check(have == expect, f"installed rules/ differs from the source tree's: missing "
              f"{sorted(expect - have)}, extra {sorted(have - expect)}")
        for rel in sorted(expect):
            check(filecmp.cmp(os.path.join(src_rules, rel), os.path.join(inst_rules, rel), shallow=False),
                  f"rules/{rel} differs from the source tree's")
        for rel in ("bots/fingerprints.rules", "bots/useragents.rules", "bots/verified.rules",
                    "waf/modsecurity.conf", "waf/crs-overrides.conf", "waf/local.conf",
                    "lua/cases.yaml", "lua/rules-test.yaml"):
            check(os.path.isfile(os.path.join(inst_rules, rel)), f"rules/{rel} was not installed")
        lua = glob.glob(os.path.join(inst_rules, "lua", "*.lua"))
        check(lua and len(lua) == len(glob.glob(os.path.join(src_rules, "lua", "*.lua"))),
              f"the Lua examples were not all installed: {lua}")

        # The example configuration, next to rules/ as in the source tree.
        conf = os.path.join(share, "conf", "portcullis.yaml")
        check(os.path.isfile(conf), f"the example configuration was not installed at {conf}")
        check(filecmp.cmp(conf, os.path.join(source, "conf", "portcullis.yaml"), shallow=False),
              "the installed conf/portcullis.yaml differs from the source tree's")
        with open(conf) as f:
            doc = yaml.safe_load(f)
        resolved = 0
        for p in doc.get("plugins") or []:
            for key in ("rules", "dir"):
                values = (p.get("config") or {}).get(key)
                for v in values if isinstance(values, list) else [values]:
                    if isinstance(v, str) and not os.path.isabs(v):
                        target = os.path.normpath(os.path.join(os.path.dirname(conf), v))
                        check(target.startswith(inst_rules + os.sep) and os.path.exists(target),
                              f"plugin {p.get('name')}: {key}: {v} does not resolve into the installed rules/ "
                              f"({target})")
                        resolved += 1
        check(resolved >= 2, f"the example configuration names {resolved} relative rules paths, expected the "
              "bot and lua ones")
        # The descriptors the example configuration names are installed with it.
        for d in doc.get("descriptors") or []:
            target = os.path.normpath(os.path.join(os.path.dirname(conf), d))
            check(os.path.isfile(target), f"descriptors: {d} does not resolve in the install ({target})")
        man = os.path.join(share, "..", "man", "man8", "portcullis.8.gz")
        check(os.path.isfile(man), f"the man page was not installed at {os.path.normpath(man)}")
        print("PASS: rules/ (bots, waf, lua) and conf/portcullis.yaml installed under "
              f"{share[len(dest):]}", flush=True)
    finally:
        if os.environ.get("PC_KEEP_TMP"):
            print(f"kept {dest}")
        else:
            shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    main()
