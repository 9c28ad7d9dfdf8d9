"""The proxy's configuration: a small YAML emitter, the config as a dict (make_config, origin_conf,
zone_conf, default_zones), the shape of origins/zones the binary accepts (config_style) and
`portcullis check` (run_check)."""

import json
import os
import re
import subprocess

from .env import BINARY, log


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) if isinstance(x, str) else _yaml_scalar(x) for x in v) + "]"
    v = str(v)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./-]*", v) and v.lower() not in _YAML_WORDS:
        return v
    return json.dumps(v)


_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null"}


def _yaml_key(k):
    return k if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", k) else json.dumps(k)


def _is_flow(v):
    return not isinstance(v, (dict, list)) or (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))


def to_yaml(value, indent=0):
    """Block-style YAML for dicts/lists of scalars; lists of scalars are written inline."""
    pad = "  " * indent
    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            if _is_flow(v) or v == {}:
                lines.append(f"{pad}{_yaml_key(k)}: {_yaml_scalar(v) if v != {} else '{}'}")
            else:
                lines.append(f"{pad}{_yaml_key(k)}:")
                lines.extend(to_yaml(v, indent + 1))
    elif isinstance(value, list):
        for item in value:
            if _is_flow(item):
                lines.append(f"{pad}- {_yaml_scalar(item)}")
            else:
                sub = to_yaml(item, indent + 1)
                sub[0] = pad + "- " + sub[0].lstrip()
                lines.extend(sub)
    else:
        lines.append(pad + _yaml_scalar(value))
    return lines


def config_text(cfg, style):
    """cfg uses lists of named origins/zones. style "list" writes them as such; style "map" writes
    `origins: {name: {...}}` / `zones: {name: {...}}` (the shape of conf/portcullis.yaml)."""
    doc = dict(cfg)
    if style == "map":
        for section in ("origins", "zones"):
            if section in doc:
                doc[section] = {item["name"]: {k: v for k, v in item.items() if k != "name"} for item in doc[section]}
    return "# Written by the Portcullis integration tests.\n" + "\n".join(to_yaml(doc)) + "\n"


_config_style = None


def run_check(path, timeout=30):
    return subprocess.run([BINARY, "check", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, text=True)


def config_style(sample_cfg, directory):
    """Which shape of origins/zones the binary accepts: PC_CONFIG_STYLE (list|map) if set, else
    the first of list (named entries) and map (keyed by name) that `portcullis check` accepts."""
    global _config_style
    if _config_style:
        return _config_style
    forced = os.environ.get("PC_CONFIG_STYLE")
    if forced in ("list", "map"):
        _config_style = forced
        return forced
    errors = {}
    if os.access(BINARY, os.X_OK):
        for style in ("list", "map"):
            path = os.path.join(directory, f"probe-{style}.yaml")
            with open(path, "w") as f:
                f.write(config_text(sample_cfg, style))
            try:
                r = run_check(path)
            except (OSError, subprocess.TimeoutExpired) as e:
                errors[style] = str(e)
                continue
            if r.returncode == 0:
                _config_style = style
                if style != "list":
                    log(f"note: config written with origins/zones as maps (list form rejected: "
                        f"{errors['list'].strip()})")
                return style
            errors[style] = r.stderr.strip() or f"exit {r.returncode}"
        log("note: portcullis check accepted neither config shape: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    _config_style = "list"
    return _config_style


def make_config(certs_rel="certs", tls_port=None, h2c_port=None, origins=(), zones=(), certificates=None,
                log_level="info", extra=None):
    """The config as a dict (lists of named origins/zones), ready for write_config()."""
    listen = []
    if tls_port is not None:
        certs = certificates or [{"cert": f"{certs_rel}/edge.pem", "key": f"{certs_rel}/edge.key"}]
        listen.append({"address": f"127.0.0.1:{tls_port}", "tls": {"certificates": certs}})
    if h2c_port is not None:
        listen.append({"address": f"127.0.0.1:{h2c_port}"})
    cfg = {"listen": listen, "origins": list(origins), "zones": list(zones),
           "log": {"access": "stdout", "level": log_level}}
    cfg.update(extra or {})
    return cfg


def origin_conf(name, port, tls=None, connect_timeout_ms=2000, **more):
    o = {"name": name, "servers": [f"127.0.0.1:{port}"]}
    if tls:
        o["tls"] = tls
    o["connect_timeout_ms"] = connect_timeout_ms
    o.update(more)
    return o


def zone_conf(name, hosts, origin, grpc=True, max_message_bytes=4194304, **more):
    z = {"name": name, "hosts": list(hosts), "origin": origin, "grpc": grpc}
    if grpc:
        z["max_message_bytes"] = max_message_bytes
    z.update(more)
    return z


def default_zones(origin="echo"):
    return [
        zone_conf("example.com", ["example.com", "*.example.com", "localhost"], origin),
        zone_conf("nogrpc.test", ["nogrpc.test"], origin, grpc=False),
    ]
