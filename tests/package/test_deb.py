#!/usr/bin/python3
"""The Debian package on a fresh Debian 12 root: `apt install ./portcullis_*.deb` pulls every
dependency from Debian's mirror; the shipped configuration passes `portcullis check` as the service's
user; `systemd-analyze verify` accepts the unit; the conffiles, the man page, logrotate's file and the
plugin SDK are in place. Then the edge runs as the unit runs it (its ExecStart, its user, only
CAP_NET_BIND_SERVICE, NOTIFY_SOCKET) in a network namespace of its own, binds 443, reports READY=1,
and a gRPC call over TLS, checked against the certificate postinst made, reaches an origin; the unit's
ExecReload refuses a broken file and the same call still works; SIGTERM stops it (STOPPING=1,
exit 0). Last, `apt purge` removes it.

The root comes from debootstrap (minbase, plus systemd and logrotate, which the checks run), made
once and kept in CACHE/root with the .debs apt fetched in CACHE/archives; each run lays an overlay of
its own on it, so every run starts from the same fresh root.
Needs root, through sudo when run as a user (debootstrap, chroot, namespaces), and Debian's mirror
(the only network it uses).

Usage: test_deb.py DEB CACHE_DIR SOURCE_DIR"""

import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

MIRROR = os.environ.get("PC_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
BASE_INCLUDE = "systemd,logrotate"
UNIT = "/lib/systemd/system/portcullis.service"
CONFIG = "/etc/portcullis/portcullis.yaml"
t0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - t0:6.1f} s] {msg}", flush=True)


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def run(argv, timeout=600, ok=True, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, **kw)
    if ok:
        check(r.returncode == 0, f"{shlex.join(argv)} exited {r.returncode}:\n{r.stdout[-4000:]}")
    return r


def in_root(root, script, timeout=600, ok=True):
    """A shell script run in the root (chroot)."""
    return run(["chroot", root, "/bin/sh", "-ec", script], timeout=timeout, ok=ok,
               env=dict(PATH="/usr/sbin:/usr/bin:/sbin:/bin", LANG="C.UTF-8", DEBIAN_FRONTEND="noninteractive"))


def base_root():
    """CACHE/root: a Debian 12 minbase root, made once (each run updates apt's lists in its overlay)."""
    root = os.path.join(CACHE, "root")
    stamp = os.path.join(CACHE, "root.ok")
    want = f"{SUITE} minbase {BASE_INCLUDE} {MIRROR}\n"
    if os.path.exists(stamp) and open(stamp).read() == want:
        return root
    log(f"debootstrap {SUITE} into {root} (once; kept for later runs)")
    shutil.rmtree(root, ignore_errors=True)
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(CACHE, "archives", "partial"), exist_ok=True)
    run(["debootstrap", "--variant=minbase", f"--include={BASE_INCLUDE}", SUITE, tmp, MIRROR], timeout=1800)
    os.rename(tmp, root)
    with open(stamp, "w") as f:
        f.write(want)
    return root


def fresh_root(work):
    """The kept root as the lower layer of an overlay whose upper layer is this run's: a fresh root
    with nothing copied, whatever the run writes left in work/. /proc and apt's package cache (the
    kept one) are mounted in it. This process runs in a mount namespace of its own (main()), so
    nothing stays mounted when it ends, however it ends."""
    base = base_root()
    root, upper, scratch = (os.path.join(work, d) for d in ("root", "upper", "overlay-work"))
    for d in (root, upper, scratch):
        os.makedirs(d)
    run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={base},upperdir={upper},workdir={scratch}", root])
    run(["mount", "-t", "proc", "proc", os.path.join(root, "proc")])
    run(["mount", "--bind", os.path.join(CACHE, "archives"), os.path.join(root, "var/cache/apt/archives")])
    return root


def deb_field(deb, field):
    return run(["dpkg-deb", "-f", deb, field]).stdout.strip()


class Notify:
    """The service manager's end of Type=notify, a datagram socket inside the root."""

    def __init__(self, root):
        self.inner = "/run/pc-notify"
        self.path = root + self.inner
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)  # the edge runs as its own user, as systemd's socket allows

    def receive(self, timeout, proc):
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                return self.sock.recv(4096).decode()
            except socket.timeout:
                check(proc.poll() is None, f"the edge exited ({proc.returncode}) before notifying")
        fail(f"no notification within {timeout} s")


def unit_lines(root, key):
    out, section = [], None
    with open(root + UNIT) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Service]" and line.startswith(key + "="):
                out.append(line[len(key) + 1:])
    return out


CALL = r"""
import sys, grpc
pem, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
creds = grpc.ssl_channel_credentials(root_certificates=open(pem, "rb").read())
with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost"),
                                                               ("grpc.default_authority", "localhost")]) as ch:
    try:
        reply = ch.unary_unary("/demo.Echo/Unary")(payload, timeout=15)
        print("reply", reply.decode())
    except grpc.RpcError as e:
        print("status", e.code().name, e.details())
"""


def main():
    global CACHE
    if len(sys.argv) != 4:
        fail(__doc__)
    deb, CACHE, source = (os.path.abspath(a) for a in sys.argv[1:])
    if os.getuid() != 0 and shutil.which("sudo"):
        # As scripts/bootstrap does: root through sudo when the tests run as a user.
        os.execvp("sudo", ["sudo", "--preserve-env", sys.executable, *sys.argv])
    check(os.getuid() == 0, "needs root (or sudo): debootstrap, chroot and namespaces")
    if os.environ.get("PC_DEB_MOUNT_NS") != str(os.getpid()):
        # Again in a mount namespace of its own (unshare execs, so the pid stays).
        os.environ["PC_DEB_MOUNT_NS"] = str(os.getpid())
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", sys.executable, *sys.argv])
    check(os.path.isfile(deb), f"no package at {deb} (scripts/package makes it)")
    os.makedirs(CACHE, exist_ok=True)
    for old in glob.glob(os.path.join(CACHE, "pc-deb-*")):  # left by a run that was killed
        shutil.rmtree(old, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the cleanup below runs
    work = tempfile.mkdtemp(prefix="pc-deb-", dir=CACHE)
    procs, sockets = [], []
    try:
        root = fresh_root(work)
        log(f"fresh root in {root}")
        shutil.copy(deb, os.path.join(root, "tmp"))
        name = os.path.basename(deb)

        # apt pulls what the package declares.
        in_root(root, f"apt-get update -qq; apt-get install -y --no-install-recommends /tmp/{name}", timeout=900)
        log("installed with apt")
        depends = [d.split("|")[0].split("(")[0].strip() for d in deb_field(deb, "Depends").split(",")]
        check("libmodsecurity3" in depends and "modsecurity-crs" in depends, f"Depends misses libraries: {depends}")
        status = in_root(root, "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' " + " ".join(depends)).stdout
        for dep in depends:
            check(re.search(rf"^{re.escape(dep)}(:\w+)? ii", status, re.M), f"dependency {dep} is not installed:\n"
                  f"{status}")

        # The files of a Debian service.
        conffiles = in_root(root, "dpkg-query -W -f='${Conffiles}' portcullis").stdout
        for f in (CONFIG, "/etc/logrotate.d/portcullis"):
            check(f in conffiles, f"{f} is not a conffile: {conffiles!r}")
        facts = in_root(root, "id -un portcullis; stat -c '%U:%G %a' /var/log/portcullis /etc/portcullis/tls/edge.key;"
                              " zcat /usr/share/man/man8/portcullis.8.gz | grep -c -E '^\\.SH \"?(SIGNALS|FILES)'")
        check(facts.stdout.split() == ["portcullis", "portcullis:adm", "750", "root:portcullis", "640", "2"],
              f"user, log directory, key or man page not as expected: {facts.stdout}")

        # The shipped configuration as the service's user: valid out of the box.
        chk = in_root(root, "install -d -o portcullis -g portcullis /var/cache/portcullis; "
                            "setpriv --reuid=portcullis --regid=portcullis --init-groups "
                            f"env CACHE_DIRECTORY=/var/cache/portcullis portcullis check -c {CONFIG} 2>/dev/null")
        check(re.search(rf"^{re.escape(CONFIG)}: ok \(", chk.stdout, re.M), f"portcullis check: {chk.stdout}")
        # --man=no: the minimal root has no man-db to look Documentation=man:portcullis(8) up with; the
        # page itself is checked above.
        ver = in_root(root, f"systemd-analyze verify --man=no {UNIT} 2>&1")
        check(ver.stdout.strip() == "", f"systemd-analyze verify printed:\n{ver.stdout}")
        lr = in_root(root, "logrotate -d /etc/logrotate.d/portcullis 2>&1")
        check("error" not in lr.stdout.lower(), f"logrotate -d:\n{lr.stdout}")
        # The shipped Lua examples test offline as installed (their descriptors included).
        lua = "/usr/share/portcullis/rules/lua"
        rt = in_root(root, f"portcullis rules test -c {lua}/rules-test.yaml {lua}/cases.yaml 2>&1", ok=False)
        check(rt.returncode == 0, f"rules test on the installed examples: exit {rt.returncode}\n{rt.stdout[-2000:]}")
        log("conffiles, user, man page, check, systemd-analyze verify, logrotate -d: ok")

        # The plugin SDK: pkg-config finds the header; the example plugin builds against it alone and
        # the installed edge describes it.
        pcdir = glob.glob(os.path.join(root, "usr/lib/*/pkgconfig"))
        check(len(pcdir) == 1, f"no pkgconfig directory: {pcdir}")
        cflags = run(["pkg-config", "--cflags", "portcullis-plugin"], env=dict(os.environ, PKG_CONFIG_PATH=pcdir[0],
                                                                               PKG_CONFIG_LIBDIR=pcdir[0])).stdout
        incs = [os.path.normpath(w[2:]) for w in cflags.split() if w.startswith("-I")]
        check(incs == [f"{root}/usr/include"] and os.path.isfile(f"{root}/usr/include/portcullis/plugin.h"),
              f"pkg-config --cflags portcullis-plugin: {cflags!r}")
        run(["cc", "-std=c11", "-shared", "-fPIC", "-fvisibility=hidden", *cflags.split(),
             os.path.join(source, "plugins/example/example.c"), "-o", os.path.join(root, "tmp/pc-sdk.so")])
        desc = in_root(root, "portcullis plugins describe /tmp/pc-sdk.so").stdout
        check("deny_methods" in desc, f"plugins describe of the SDK-built plugin:\n{desc}")
        log("plugin SDK: ok")

        # Run it as the unit does, in a network namespace of its own (443 is not ours to take here).
        holder = subprocess.Popen(["unshare", "--net", "sleep", "600"])
        procs.append(holder)
        time.sleep(0.2)
        netns = ["nsenter", "-t", str(holder.pid), "--net"]
        run(netns + ["ip", "link", "set", "lo", "up"])
        origin = subprocess.Popen(netns + ["/usr/bin/python3", os.path.join(source, "tests/integration/grpc_origin.py"),
                                           "--port", "50051"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(origin)
        notify = Notify(root)
        sockets.append(notify.sock)  # a bound socket keeps the mount busy: closed before the umount
        (start,) = unit_lines(root, "ExecStart")
        user = unit_lines(root, "User")[0]
        caps = unit_lines(root, "AmbientCapabilities")[0]
        check(caps == "CAP_NET_BIND_SERVICE", caps)
        edge_cmd = (f"exec chroot {shlex.quote(root)} setpriv --reuid={user} --regid={user} --init-groups --inh-caps=+net_bind_service "
                    f"--ambient-caps=+net_bind_service --no-new-privs env NOTIFY_SOCKET={notify.inner} "
                    f"CACHE_DIRECTORY=/var/cache/portcullis {start}")
        err_path = os.path.join(work, "edge.stderr")
        with open(err_path, "wb") as err:
            edge = subprocess.Popen(netns + ["/bin/sh", "-c", edge_cmd],
                                    stdout=subprocess.DEVNULL, stderr=err)
        procs.append(edge)

        def edge_log():
            with open(err_path, errors="replace") as f:
                return f.read()[-3000:]

        msg = notify.receive(120, edge)
        check(msg == "READY=1", f"first notification: {msg!r}\n{edge_log()}")
        log("the edge runs as the unit's user with CAP_NET_BIND_SERVICE only and reported READY=1")
        status = run(netns + ["cat", f"/proc/{edge.pid}/status"]).stdout
        check(re.search(r"^CapEff:\s*0000000000000400$", status, re.M), f"edge capabilities:\n{status}")

        def call(payload):
            return run(netns + ["/usr/bin/python3", "-c", CALL, root + "/etc/portcullis/tls/edge.pem", "443",
                                payload]).stdout.strip()

        got = call("through-the-package")
        check(got == "reply through-the-package", f"gRPC call over TLS on 443: {got}\n{edge_log()}")

        # The unit's ExecReload with a broken file: the check fails, SIGHUP is never sent.
        reload = unit_lines(root, "ExecReload")
        check(len(reload) == 2 and " check " in reload[0], reload)
        in_root(root, f"cp {CONFIG} /tmp/good.yaml; printf 'zones:\\n  - name: broken\\n' >> {CONFIG}")
        as_user = f"setpriv --reuid={user} --regid={user} --init-groups env CACHE_DIRECTORY=/var/cache/portcullis "
        r = in_root(root, as_user + reload[0].replace("$MAINPID", str(edge.pid)) + " 2>&1", ok=False)
        check(r.returncode == 2 and "portcullis.yaml:" in r.stdout, f"ExecReload's check on a broken file: exit "
              f"{r.returncode}\n{r.stdout}")
        time.sleep(0.3)
        check("SIGHUP" not in edge_log() and edge.poll() is None, f"the edge saw a reload:\n{edge_log()}")
        got = call("after-broken-reload")
        check(got == "reply after-broken-reload", f"call after the refused reload: {got}")
        # The file restored, both lines run: a reload.
        in_root(root, f"cp /tmp/good.yaml {CONFIG}")
        for line in reload:
            in_root(root, as_user + line.replace("$MAINPID", str(edge.pid)) + " >/dev/null 2>&1")
        check(notify.receive(60, edge).startswith("RELOADING=1"), "no RELOADING=1")
        check(notify.receive(60, edge) == "READY=1", "no READY=1 after the reload")
        check("configuration reloaded" in edge_log(), edge_log())
        got = call("after-reload")
        check(got == "reply after-reload", f"call after the reload: {got}")
        log("ExecReload: a broken file refused by the check, the running config kept; a valid one reloaded")

        lines = in_root(root, "cat /var/log/portcullis/access.log; stat -c %U /var/log/portcullis/access.log").stdout
        entries = [json.loads(x) for x in lines.splitlines()[:-1]]
        check([e["grpc_status"] for e in entries] == [0, 0, 0] and lines.splitlines()[-1] == "portcullis",
              f"access log:\n{lines}")

        edge.send_signal(signal.SIGTERM)
        check(notify.receive(30, edge) == "STOPPING=1", "no STOPPING=1")
        code = edge.wait(60)
        check(code == 0, f"edge exit {code} after SIGTERM:\n{edge_log()}")
        log("SIGTERM: STOPPING=1, exit 0")

        # logrotate as the timer runs it: the log renamed, a new one made for the service's user.
        in_root(root, "logrotate -f /etc/logrotate.d/portcullis")
        rot = in_root(root, "cd /var/log/portcullis && ls && stat -c '%n %U:%G %a %s' access.log && wc -l < access.log.1")
        check(rot.stdout.split() == ["access.log", "access.log.1", "access.log", "portcullis:adm", "640", "0", "3"],
              f"after logrotate:\n{rot.stdout}")
        log("logrotate: rotated, new file portcullis:adm 0640")

        in_root(root, "apt-get purge -y portcullis >/dev/null")
        left = in_root(root, "ls -d /etc/portcullis /var/log/portcullis /usr/bin/portcullis 2>/dev/null || true").stdout
        check(left.strip() == "", f"left after purge: {left}")
        log("apt purge: ok")
        print("PASS: installed, checked, verified, served, reloaded and purged on a fresh Debian 12", flush=True)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        for sock in sockets:
            sock.close()
        if os.environ.get("PC_KEEP_TMP"):
            print(f"kept {work} (its root is mounted only while this runs)")
        um = subprocess.run(["umount", "-R", os.path.join(work, "root")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
        if um.returncode != 0 and os.path.ismount(os.path.join(work, "root")):
            print(f"umount -R {work}/root: {um.stdout}", flush=True)
        elif not os.environ.get("PC_KEEP_TMP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
