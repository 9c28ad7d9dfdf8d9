"""Stack: what a test file's setup() builds and its tests get as `st`: a temp dir with
certificates, origins, a config and the proxy, and the channels opened to it. healthy(), logs(),
restart_proxy() and close() are what the runner (conftest.py) uses between and after tests."""

import os

from .certs import gen_certs
from .channels import authority_host, h2c_channel, tls_channel
from .config import config_style, config_text, make_config
from .logs import tail
from .net import free_port
from .origins import Origin, StubH2Origin
from .processes import make_tmpdir
from .proxy import Proxy


class Stack:
    """A temp dir with certificates, origins, a config and the proxy. Tests get this as fixture."""

    def __init__(self, tag):
        self.dir = make_tmpdir(tag)
        self.certs_dir = os.path.join(self.dir, "certs")
        self.certs = gen_certs(self.certs_dir)
        self.origins = {}
        self.proxies = []
        self.proxy = None
        self.stubs = []
        self.channels = []
        self.problems = []
        self.config_path = None
        self.cfg = None

    # origins
    def start_origin(self, name="echo", tls=False):
        cert = (self.certs["origin"], self.certs["origin_key"]) if tls else None
        origin = Origin(self.dir, name=name, tls=cert)
        self.origins[name] = origin
        return origin

    def start_stub(self, **kw):
        stub = StubH2Origin(**kw)
        self.stubs.append(stub)
        return stub

    # config + proxy
    def write_config(self, cfg, name="portcullis.yaml", style=None):
        style = style or config_style(cfg, self.dir)
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(config_text(cfg, style))
        return path

    def start_proxy(self, origins, zones, tls=True, h2c=True, certificates=None, extra=None, name="portcullis"):
        self.tls_port = free_port() if tls else None
        self.h2c_port = free_port() if h2c else None
        self.cfg = make_config(tls_port=self.tls_port, h2c_port=self.h2c_port, origins=origins, zones=zones,
                               certificates=certificates, extra=extra)
        self.config_path = self.write_config(self.cfg, name=f"{name}.yaml")
        ports = [p for p in (self.tls_port, self.h2c_port) if p]
        self._proxy_args = (self.config_path, ports, name)
        self.proxy = Proxy(self.config_path, ports, self.dir, name=name)
        self.proxies.append(self.proxy)
        return self.proxy

    def start_edge(self, name, plugins, origins, zones, workers=2, admin=None):
        """One more Portcullis beside self.proxy (a second edge of a fleet, or one per config):
        h2c only, these plugins, a 3 s drain; returns it with .port. stop_edges() stops it."""
        port = free_port()
        extra = {"workers": workers, "drain_timeout_ms": 3000, "plugins": list(plugins)}
        if admin:
            extra["admin"] = {"address": f"127.0.0.1:{admin}"}
        cfg = make_config(h2c_port=port, origins=origins, zones=zones, extra=extra)
        p = Proxy(self.write_config(cfg, name=f"{name}.yaml"), [port], self.dir, name=name)
        self.proxies.append(p)
        p.port = port
        return p

    def stop_edges(self, *edges):
        """Stops edges from start_edge() after closing the test's channels (their connections end
        first), keeping any problem for the teardown report."""
        for ch in self.channels:
            ch.close()
        self.channels.clear()
        for p in edges:
            problem = p.stop()
            if problem:
                self.problems.append(problem)

    def restart_proxy(self):
        if self.proxy is not None:
            problem = self.proxy.stop()
            if problem:
                self.problems.append(problem)
        config_path, ports, name = self._proxy_args
        self.proxy = Proxy(config_path, ports, self.dir, name=f"{name}-{len(self.proxies)}")
        self.proxies.append(self.proxy)

    def healthy(self):
        """None, or why the stack is broken (a crashed proxy or origin)."""
        if self.proxy is not None and not self.proxy.alive():
            return f"portcullis exited (code {self.proxy.proc.returncode})"
        for origin in self.origins.values():
            if not origin.alive():
                return f"origin {origin.name} exited (code {origin.proc.returncode})"
        return None

    def logs(self):
        parts = [p.logs() for p in self.proxies[-1:]]
        for origin in self.origins.values():
            parts.append(f"--- origin {origin.name} stderr ---\n{tail(origin.err_path, 30)}")
        return "\n".join(parts)

    # clients
    def tls_channel(self, authority="example.com", server_name=None, port=None):
        ch = tls_channel(port or self.tls_port, self.certs["ca"], authority=authority,
                         server_name=server_name or authority_host(authority))
        self.channels.append(ch)
        return ch

    def h2c_channel(self, authority="example.com", port=None):
        ch = h2c_channel(port or self.h2c_port, authority=authority)
        self.channels.append(ch)
        return ch

    def close(self):
        for ch in self.channels:
            try:
                ch.close()
            except Exception:
                pass
        self.channels.clear()
        for proxy in self.proxies:
            if proxy.exit_code is None:
                problem = proxy.stop()
                if problem:
                    self.problems.append(problem + "\n" + proxy.logs(40))
        for origin in self.origins.values():
            origin.stop()
        for stub in self.stubs:
            stub.stop()
        return self.problems
