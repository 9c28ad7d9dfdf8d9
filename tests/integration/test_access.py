#!/usr/bin/python3
"""Access-protected origins over real gRPC: deny (PERMISSION_DENIED), mtls (client certificate asked
for at the handshake by SNI), service_token and jwt (RS256/ES256 against a JWKS), each with good and
bad credentials; nothing refused reaches the origin, checked credentials are stripped, the edge's
identity header cannot be spoofed, the vouch JWT verifies against the admin /jwks.json, plain HTTP is
untouched unless http: jwt, and `portcullis check` on a risky, a safe and a broken config.

All key material is generated here (nothing secret is committed). One origin process serves every
origin name, so its Stats counters tell whether any refused call got through."""

import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import time

import grpc
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import pclib
from pclib import describe, origin_conf, rpc_error, zone_conf

UNARY = "/demo.Echo/Unary"
ISSUER = "https://auth.example.test"
AUDIENCE = "billing-api"
VOUCH_HEADER = "portcullis-jwt-assertion"
ACCESS_TOKEN = os.path.join(pclib.SOURCE_DIR, "scripts", "access-token")
OK = grpc.StatusCode.OK
UNAUTH = grpc.StatusCode.UNAUTHENTICATED


# --- key material ---------------------------------------------------------------------------------


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_client(ca, cn):
    """(key PEM, certificate PEM) of a client certificate issued by `ca` (key, cert)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Services"),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca[1].subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca[0], hashes.SHA256()))
    return pem_key(key), pem_cert(cert)


def public_jwk(key, kid):
    pub = key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(pub))
    else:
        d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(pub))
    d["kid"] = kid
    return d


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_token():
    r = subprocess.run([pclib.PYTHON, ACCESS_TOKEN, "--json", "--name", "reports"], stdout=subprocess.PIPE,
                       check=True, text=True, timeout=30)
    return json.loads(r.stdout)


def make_material(d):
    """Everything the access policies name, under d (relative paths in the config)."""
    os.makedirs(d, exist_ok=True)
    m = {}
    clients_ca, partners_ca, rogue_ca = make_ca("Clients CA"), make_ca("Partners CA"), make_ca("Rogue CA")
    write(os.path.join(d, "clients-ca.pem"), pem_cert(clients_ca[1]))
    write(os.path.join(d, "partners-ca.pem"), pem_cert(partners_ca[1]))
    m["alice"] = make_client(clients_ca, "alice")  # valid for mtls.example.com
    m["bob"] = make_client(partners_ca, "bob")  # valid for partners.example.com only
    m["mallory"] = make_client(rogue_ca, "alice")  # same name, unknown CA

    m["rsa"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    m["ec"] = ec.generate_private_key(ec.SECP256R1())
    m["attacker"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write(os.path.join(d, "jwks.json"), json.dumps({"keys": [public_jwk(m["rsa"], "rsa-1"),
                                                             public_jwk(m["ec"], "ec-1")]}))
    write(os.path.join(d, "vouch-rsa.pem"), pem_key(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    write(os.path.join(d, "vouch-ec.pem"), pem_key(ec.generate_private_key(ec.SECP256R1())))

    m["token"] = new_token()
    m["token2"] = new_token()
    with open(os.path.join(d, "tokens.yaml"), "w") as f:
        f.write("# service tokens (hashed secrets)\n")
        for t in (m["token"], m["token2"]):
            f.write("\n".join(f"{'- ' if i == 0 else '  '}{k}: {json.dumps(v)}"
                              for i, (k, v) in enumerate(t["entry"].items())) + "\n")
    return m


# --- the stack --------------------------------------------------------------------------------------


def access_origins(port):
    jwt_conf = {"jwks": "access/jwks.json", "issuer": ISSUER, "audience": AUDIENCE, "leeway_s": 60}
    return [
        origin_conf("open", port),
        origin_conf("billing", port, access={"protected": True, "grpc": "deny"}),
        origin_conf("legacy", port, access={"protected": True}),
        origin_conf("mtls-o", port, access={"grpc": "mtls", "mtls": {"ca": "access/clients-ca.pem"},
                                            "vouch": {"key": "access/vouch-rsa.pem"}}),
        origin_conf("partners-o", port, access={"grpc": "mtls", "mtls": {"ca": "access/partners-ca.pem"}}),
        origin_conf("token-o", port, access={"grpc": "service_token",
                                             "service_token": {"tokens_file": "access/tokens.yaml"},
                                             "vouch": {"key": "access/vouch-ec.pem", "header": "x-edge-identity"}}),
        origin_conf("jwt-o", port, access={"grpc": "jwt", "http": "jwt", "jwt": jwt_conf,
                                           "vouch": {"key": "access/vouch-ec.pem", "ttl_s": 30}}),
    ]


def access_zones():
    return [
        zone_conf("open", ["example.com", "localhost"], "open"),
        zone_conf("billing", ["billing.example.com"], "billing"),
        zone_conf("legacy", ["legacy.example.com"], "legacy"),
        zone_conf("mtls", ["mtls.example.com"], "mtls-o"),
        zone_conf("partners", ["partners.example.com"], "partners-o"),
        zone_conf("token", ["token.example.com"], "token-o"),
        zone_conf("jwt", ["jwt.example.com"], "jwt-o"),
    ]


def setup():
    st = pclib.Stack("access")
    st.m = make_material(os.path.join(st.dir, "access"))
    st.origin = st.start_origin("echo")
    st.admin_port = pclib.free_port()
    st.start_proxy(access_origins(st.origin.port), access_zones(),
                   extra={"admin": {"address": f"127.0.0.1:{st.admin_port}"}})
    pclib.wait_port(st.admin_port, st.proxy.proc, what="admin listener")
    return st


def channel(st, host, client=None, authority=None):
    """TLS to the edge for `host` (SNI and certificate check), optionally with a client certificate
    (key PEM, cert PEM), sending `authority` (default host) as :authority."""
    with open(st.certs["ca"], "rb") as f:
        root = f.read()
    if client:
        creds = grpc.ssl_channel_credentials(root, private_key=client[0], certificate_chain=client[1])
    else:
        creds = grpc.ssl_channel_credentials(root)
    ch = grpc.secure_channel(f"127.0.0.1:{st.tls_port}", creds, options=pclib.channel_options() + [
        ("grpc.ssl_target_name_override", host), ("grpc.default_authority", authority or host)])
    st.channels.append(ch)
    return ch


def unary_calls(st):
    return st.origin.stats()["calls"]["Unary"]


def last_metadata(st):
    return st.origin.stats()["last_metadata"]


def call(ch, metadata=()):
    return ch.unary_unary(UNARY).with_call(b"hi", metadata=list(metadata), timeout=10)


def refused(st, ch, metadata, code, detail, what):
    """The call fails with `code` and a message containing `detail`, and never reaches the origin."""
    before = unary_calls(st)
    err = rpc_error(ch.unary_unary(UNARY), b"hi", metadata=list(metadata), timeout=10)
    assert err.code() == code, f"{what}: {describe(err)}"
    assert detail in (err.details() or ""), f"{what}: details {err.details()!r} lack {detail!r}"
    assert unary_calls(st) == before, f"{what}: the refused call reached the origin"
    return err


def access_log(st):
    return pclib.read_json_lines(st.proxy.out_path)


def log_for(st, pred, count=1):
    """The newest access-log line matching pred, once at least `count` match (the log is written
    when a call ends). Each worker writes its lines in batches, so lines of different workers are
    not in time order in the file: newest by its `time` and request sequence, not by position."""
    lines = pclib.json_lines_matching(st.proxy.out_path, pred, count, timeout=5)
    return max(lines, key=lambda x: (x["time"], pclib.request_seq(x)))


def jwks_from_admin(st):
    status, body = pclib.http_get(st.admin_port, "/jwks.json")
    assert status == 200, (status, body)
    return json.loads(body)


def verify_vouch(st, token, audience):
    """Checks the edge's token with the JWKS from the admin listener (kid lookup); returns its claims."""
    kid = jwt.get_unverified_header(token)["kid"]
    keys = {k["kid"]: k for k in jwks_from_admin(st)["keys"]}
    assert kid in keys, f"kid {kid} not in the admin JWKS {list(keys)}"
    jwk = keys[kid]
    algo = jwt.algorithms.RSAAlgorithm if jwk["kty"] == "RSA" else jwt.algorithms.ECAlgorithm
    return jwt.decode(token, algo.from_jwk(json.dumps(jwk)), algorithms=[jwk["alg"]], audience=audience,
                      issuer="portcullis")


def bearer(st, key="rsa", kid=None, headers=None, **claims):
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc-reports", "iat": now, "exp": now + 300}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    alg = "RS256" if key in ("rsa", "attacker") else "ES256"
    hdr = {"kid": kid or ("ec-1" if key == "ec" else "rsa-1")}
    hdr.update(headers or {})
    return jwt.encode(body, st.m[key], algorithm=alg, headers=hdr)


def metadata_keys(md):
    return [k for k, _ in md]


# --- deny -----------------------------------------------------------------------------------------


def test_deny_refuses_grpc_before_the_origin(st):
    ch = channel(st, "billing.example.com")
    err = refused(st, ch, [], grpc.StatusCode.PERMISSION_DENIED, "gRPC is disabled for protected origin billing",
                  "deny")
    assert "secret" not in err.details().lower()
    # An access map without access.grpc denies by default (and check warns about it, below).
    refused(st, channel(st, "legacy.example.com"), [], grpc.StatusCode.PERMISSION_DENIED,
            "gRPC is disabled for protected origin legacy", "implicit deny")
    # Origins without a policy are untouched.
    assert call(channel(st, "example.com"))[0] == b"hi"
    line = log_for(st, lambda x: x.get("zone") == "billing")
    assert line.get("grpc_status") == 7 and line["plugins"].get("access.result") == "denied", line


def test_plain_http_untouched_unless_http_jwt(st):
    """Login flows are the origin's business: plain HTTP to a deny origin is passed on."""
    def get(host, *extra):
        return pclib.curl(["--http2", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", st.certs["ca"],
                           "--resolve", f"{host}:{st.tls_port}:127.0.0.1", *extra,
                           f"https://{host}:{st.tls_port}/login"])

    before = len(access_log(st))
    rc, out, err = get("billing.example.com")
    assert rc == 0, err
    assert out != "403", f"plain HTTP to the deny origin was refused by the edge ({out})"
    # http: jwt applies the JWT check to plain HTTP too.
    rc, out, err = get("jwt.example.com")
    assert rc == 0 and out == "403", f"plain HTTP without a token: {out} {err}"
    rc, out, err = get("jwt.example.com", "-H", f"authorization: Bearer {bearer(st)}")
    assert rc == 0 and out != "403", f"plain HTTP with a token: {out} {err}"
    lines = pclib.wait_until(lambda: access_log(st)[before:] if len(access_log(st)) >= before + 3 else None)
    assert lines and [x["plugins"].get("access.result") for x in lines if x.get("zone") == "jwt"] == \
        ["unauthenticated", "allowed"], lines


# --- mtls -----------------------------------------------------------------------------------------


def test_mtls_good_certificate(st):
    def mtls_ok(x):
        return x.get("zone") == "mtls" and x.get("grpc_status") == 0

    before = len([x for x in access_log(st) if mtls_ok(x)])
    reply, _ = call(channel(st, "mtls.example.com", client=st.m["alice"]))
    assert reply == b"hi"
    md = dict(last_metadata(st))
    assert VOUCH_HEADER in md, f"no vouch header at the origin: {metadata_keys(last_metadata(st))}"
    claims = verify_vouch(st, md[VOUCH_HEADER], "mtls-o")
    assert claims["sub"] == "CN=alice,O=Example Services" and claims["common_name"] == "alice", claims
    assert claims["auth_method"] == "mtls"
    assert jwt.get_unverified_header(md[VOUCH_HEADER])["alg"] == "RS256"
    line = log_for(st, mtls_ok, count=before + 1)
    assert line["plugins"].get("access.subject") == "CN=alice,O=Example Services", line


def test_mtls_bad_certificates(st):
    refused(st, channel(st, "mtls.example.com"), [], UNAUTH, "requires a client certificate", "no certificate")
    refused(st, channel(st, "mtls.example.com", client=st.m["mallory"]), [], UNAUTH,
            "requires a client certificate", "certificate from an unknown CA")
    # bob's certificate is valid, but for the partners origin's CA.
    refused(st, channel(st, "mtls.example.com", client=st.m["bob"]), [], UNAUTH, "requires a client certificate",
            "certificate from another origin's CA")
    assert call(channel(st, "partners.example.com", client=st.m["bob"]))[0] == b"hi"
    # A connection verified for partners.example.com must not carry calls to mtls.example.com (and the
    # other way round), even though both names are on the edge's certificate.
    refused(st, channel(st, "partners.example.com", client=st.m["bob"], authority="mtls.example.com"), [], UNAUTH,
            "checked for TLS server name \"partners.example.com\"", "connection reused across origins")
    refused(st, channel(st, "mtls.example.com", client=st.m["alice"], authority="partners.example.com"), [], UNAUTH,
            "not for this host", "connection reused across origins (2)")
    # A certificate is only asked for where an mtls origin is behind the SNI: others never see a request.
    assert call(channel(st, "example.com", client=st.m["alice"]))[0] == b"hi"


def test_mtls_certificate_request_only_for_mtls_zones(st):
    def acceptable_cas(host):
        rc, out = pclib.s_client(st.tls_port, ["-servername", host, "-alpn", "h2", "-CAfile", st.certs["ca"]])
        return out

    out = acceptable_cas("mtls.example.com")
    assert re.search(r"Acceptable client certificate CA names\s*\n\s*CN ?= ?Clients CA", out), out[-2000:]
    out = acceptable_cas("example.com")
    assert "Acceptable client certificate CA names" not in out, out[-2000:]


# --- service tokens -------------------------------------------------------------------------------


def token_md(t, secret=None, cid=None):
    return [("access-client-id", cid or t["id"]), ("access-client-secret", secret or t["secret"])]


def test_service_token_good(st):
    ch = channel(st, "token.example.com")
    for t in (st.m["token"], st.m["token2"], st.m["token"]):  # the third call is served from the cache
        reply, _ = call(ch, token_md(t) + [("x-keep", "yes")])
        assert reply == b"hi"
        md = dict(last_metadata(st))
        assert "access-client-id" not in md and "access-client-secret" not in md, \
            f"credentials reached the origin: {metadata_keys(last_metadata(st))}"
        assert md.get("x-keep") == "yes"
        claims = verify_vouch(st, md["x-edge-identity"], "token-o")
        assert claims["sub"] == t["id"] and claims["auth_method"] == "service_token", claims
        assert jwt.get_unverified_header(md["x-edge-identity"])["alg"] == "ES256"
    # The three calls each left a line naming the token that was accepted.
    # Lines are written as calls end, a worker's batch at a time: wait for all three.
    ids = [x["plugins"].get("access.client_id") for x in pclib.json_lines_matching(
        st.proxy.out_path, lambda x: x.get("zone") == "token" and x.get("grpc_status") == 0, 3, timeout=5)]
    assert sorted(ids[-3:]) == sorted([st.m["token"]["id"], st.m["token"]["id"],
                                                                 st.m["token2"]["id"]]), ids
    assert st.m["token"]["secret"] not in json.dumps(access_log(st)), "a secret was logged"


def test_service_token_bad(st):
    ch = channel(st, "token.example.com")
    t, t2 = st.m["token"], st.m["token2"]
    refused(st, ch, [], UNAUTH, "requires a service token", "missing headers")
    refused(st, ch, token_md(t)[:1], UNAUTH, "requires a service token", "missing secret")
    refused(st, ch, token_md(t)[1:], UNAUTH, "requires a service token", "missing id")
    refused(st, ch, token_md(t, secret=t2["secret"]), UNAUTH, "invalid service token", "another token's secret")
    wrong = t["secret"][:-1] + ("1" if t["secret"].endswith("0") else "0")  # always differs from the real one
    refused(st, ch, token_md(t, secret=wrong), UNAUTH, "invalid service token", "wrong secret")
    refused(st, ch, token_md(t, cid="pc-unknown"), UNAUTH, "invalid service token", "unknown id")
    err = refused(st, ch, token_md(t) + [("access-client-secret", "x")], UNAUTH, "repeated", "repeated secret")
    assert t["secret"] not in err.details()
    # A good token on another origin's zone means nothing there.
    refused(st, channel(st, "jwt.example.com"), token_md(t), UNAUTH, "requires a bearer token", "token on jwt origin")


# --- JWT --------------------------------------------------------------------------------------------


def test_jwt_good_rs256_es256(st):
    def jwt_ok(x):
        return x.get("zone") == "jwt" and x.get("grpc_status") == 0

    before = len([x for x in access_log(st) if jwt_ok(x)])
    ch = channel(st, "jwt.example.com")
    now = int(time.time())
    for what, tok in (("RS256", bearer(st)), ("ES256", bearer(st, key="ec")),
                      ("aud list", bearer(st, aud=["other", AUDIENCE])),
                      ("expired within leeway", bearer(st, exp=now - 20)),
                      ("nbf reached", bearer(st, nbf=now - 5, sub="svc-nbf"))):
        reply, _ = call(ch, [("authorization", f"Bearer {tok}"), ("x-keep", "1")])
        assert reply == b"hi", what
        md = dict(last_metadata(st))
        assert "authorization" not in md, f"{what}: the bearer token reached the origin"
        claims = verify_vouch(st, md[VOUCH_HEADER], "jwt-o")
        assert claims["sub"] == jwt.decode(tok, options={"verify_signature": False})["sub"], (what, claims)
        assert claims["auth_method"] == "jwt" and claims["exp"] - claims["iat"] == 30, claims
    line = log_for(st, jwt_ok, count=before + 5)
    plugins = line["plugins"]
    assert plugins.get("access.sub") == "svc-nbf" and plugins.get("access.claim.iss") == ISSUER, plugins
    assert not any("Bearer" in v for v in plugins.values()), plugins


def test_jwt_bad_tokens(st):
    ch = channel(st, "jwt.example.com")
    now = int(time.time())
    good = bearer(st)
    h, p, s = good.split(".")
    none = b64u(json.dumps({"alg": "none", "kid": "rsa-1", "typ": "JWT"})) + "." + p + "."
    hs_input = b64u(json.dumps({"alg": "HS256", "kid": "rsa-1"})) + "." + p
    rsa_pub = st.m["rsa"].public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    hs256 = hs_input + "." + b64u(hmac.new(rsa_pub, hs_input.encode(), hashlib.sha256).digest())
    tampered = h + "." + b64u(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "admin", "exp": now + 300})) + \
        "." + s
    es_as_rs = bearer(st, key="ec", kid="rsa-1")  # ES256 token naming the RSA key
    cases = [
        ("expired", bearer(st, exp=now - 120), "token expired"),
        ("wrong audience", bearer(st, aud="other-api"), "wrong audience"),
        ("wrong issuer", bearer(st, iss="https://evil.example"), "wrong issuer"),
        ("not yet valid", bearer(st, nbf=now + 600), "token not yet valid (nbf)"),
        ("issued in the future", bearer(st, iat=now + 600), "token issued in the future (iat)"),
        ("no exp", bearer(st, exp=None), "token has no exp"),
        ("exp not a number", bearer(st, exp=str(now + 300)), "exp is not a number"),
        ("wrong signature", bearer(st, key="attacker"), "bad signature"),
        ("tampered claims", tampered, "bad signature"),
        ("alg none", none, "alg none is not accepted"),
        ("HS256 with the public key", hs256, "unsupported alg"),
        ("key of another type", es_as_rs, "alg does not match the key"),
        ("unknown kid", bearer(st, kid="rsa-2"), "unknown key id"),
        ("malformed", "not.a-token", "malformed token"),
        ("malformed 2", "abc", "malformed token"),
        ("malformed 3", h + "." + p + ".@@@", "malformed token"),
        ("crit header", bearer(st, headers={"crit": ["exp"]}), "unsupported critical header"),
    ]
    for what, tok, reason in cases:
        err = refused(st, ch, [("authorization", f"Bearer {tok}")], UNAUTH, f"invalid token: {reason}", what)
        assert tok not in err.details() and p not in err.details(), f"{what}: the token leaked in the message"
    refused(st, ch, [], UNAUTH, "requires a bearer token in the authorization header", "missing token")
    refused(st, ch, [("authorization", f"Basic {b64u('user:pass')}")], UNAUTH, "Bearer scheme", "basic auth")
    refused(st, ch, [("authorization", f"Bearer {good}"), ("authorization", f"Bearer {good}")], UNAUTH,
            "repeated", "repeated authorization")
    # The access log says why, and never holds a token.
    reasons = [x["plugins"].get("access.reason") for x in access_log(st) if x.get("zone") == "jwt"]
    assert "invalid token: token expired" in reasons and "invalid token: alg none is not accepted" in reasons, reasons
    text = json.dumps(access_log(st))
    assert all(tok not in text for _, tok, _ in cases if len(tok) > 20) and good not in text


# --- identity headers -------------------------------------------------------------------------------


def test_spoofed_identity_headers_are_removed(st):
    # To an origin without a policy: the edge's identity header never comes from a client.
    call(channel(st, "example.com"), [(VOUCH_HEADER, "forged"), ("x-edge-identity", "forged")])
    keys = metadata_keys(last_metadata(st))
    assert VOUCH_HEADER not in keys and "x-edge-identity" not in keys, keys
    # To a protected origin: replaced by the edge's own token, exactly one value.
    call(channel(st, "jwt.example.com"), [("authorization", f"Bearer {bearer(st)}"), (VOUCH_HEADER, "forged")])
    values = [v for k, v in last_metadata(st) if k == VOUCH_HEADER]
    assert len(values) == 1 and values[0] != "forged", values
    verify_vouch(st, values[0], "jwt-o")


def test_header_case_variations_never_pass(st):
    """HTTP/2 header names are lower case; an upper-case copy of a credential or identity header is a
    malformed request, refused before any plugin or origin sees it."""
    t = st.m["token"]
    base = pclib.grpc_request_headers("token.example.com")
    frame = [pclib.grpc_frame(b"hi")]
    before = unary_calls(st)
    for extra in ([("Access-Client-Id", t["id"].encode()), ("access-client-secret", t["secret"].encode())],
                  [("access-client-id", t["id"].encode()), ("ACCESS-CLIENT-SECRET", t["secret"].encode())],
                  [("access-client-id", t["id"].encode()), ("access-client-secret", t["secret"].encode()),
                   ("X-Edge-Identity", b"forged")]):
        r = pclib.h2_request(st.tls_port, base + extra, chunks=frame, server_name="token.example.com",
                             ca=st.certs["ca"])
        # nghttp2 resets such a stream with PROTOCOL_ERROR (RFC 9113 8.2.1: malformed).
        assert r.reset == 1 and r.grpc_status is None, f"{extra}: {r!r}"
    # The lower-case request goes through on the same path.
    r = pclib.h2_request(st.tls_port, base + [("access-client-id", t["id"].encode()),
                                              ("access-client-secret", t["secret"].encode())],
                         chunks=frame, server_name="token.example.com", ca=st.certs["ca"])
    assert r.grpc_status == 0, repr(r)
    assert unary_calls(st) == before + 1


# --- the admin JWKS -----------------------------------------------------------------------------------


def test_admin_jwks_lists_the_vouch_keys(st):
    keys = jwks_from_admin(st)["keys"]
    assert sorted(k["kty"] for k in keys) == ["EC", "RSA"], keys  # vouch-ec.pem is shared: listed once
    for k in keys:
        assert k["use"] == "sig" and k["alg"] in ("RS256", "ES256") and "d" not in k, k
        # RFC 7638 thumbprint as kid
        req = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[k["kty"]]
        canon = json.dumps({m: k[m] for m in req}, separators=(",", ":"), sort_keys=True)
        assert k["kid"] == b64u(hashlib.sha256(canon.encode()).digest()), k


def test_reload_rotates_vouch_key_keeping_the_old_one_published(st):
    before = {k["kid"] for k in jwks_from_admin(st)["keys"]}
    write(os.path.join(st.dir, "access", "vouch-ec2.pem"), pem_key(ec.generate_private_key(ec.SECP256R1())))
    for o in st.cfg["origins"]:
        if o["name"] == "jwt-o":
            o["access"]["vouch"]["key"] = "access/vouch-ec2.pem"
    st.write_config(st.cfg, name=os.path.basename(st.config_path))
    marker = "configuration reloaded"
    seen = pclib.tail(st.proxy.err_path, 100000).count(marker)
    st.proxy.proc.send_signal(signal.SIGHUP)
    assert pclib.wait_until(lambda: pclib.tail(st.proxy.err_path, 100000).count(marker) > seen, timeout=10), \
        pclib.tail(st.proxy.err_path, 30)
    after = {k["kid"] for k in jwks_from_admin(st)["keys"]}
    assert before < after and len(after) == len(before) + 1, (before, after)
    # Calls now carry tokens signed with the new key, which the published set verifies.
    call(channel(st, "jwt.example.com"), [("authorization", f"Bearer {bearer(st)}")])
    token = dict(last_metadata(st))[VOUCH_HEADER]
    assert jwt.get_unverified_header(token)["kid"] in after - before
    verify_vouch(st, token, "jwt-o")


# --- portcullis check ------------------------------------------------------------------------------


def check_config(st, name, origins, zones):
    cfg = pclib.make_config(tls_port=pclib.free_port(), origins=origins, zones=zones)
    path = st.write_config(cfg, name=f"{name}.yaml")
    r = pclib.run_check(path)
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in r.stderr, f"check {name}: sanitizer finding:\n{r.stderr[-4000:]}"
    return path, r


def warnings(r):
    return [line for line in r.stdout.splitlines() if line.startswith("warning:")]


def test_check_risky_safe_and_broken(st):
    port = st.origin.port
    style = pclib.config_style(None, st.dir)
    label = "zones[1] (legacy)" if style == "list" else "zones.legacy"
    zones = [zone_conf("open", ["example.com"], "open"), zone_conf("legacy", ["legacy.example.com"], "legacy")]

    # Risky: gRPC on, protected origin, access.grpc not chosen.
    path, r = check_config(st, "risky", [origin_conf("open", port), origin_conf("legacy", port,
                                                                                access={"protected": True})], zones)
    assert r.returncode == 0, r.stderr
    assert warnings(r) == [
        f"warning: {label}: grpc is on, but origin legacy is access-protected and its access.grpc is not set: gRPC "
        "calls to it are denied; set access.grpc on the origin (deny, mtls, service_token or jwt) or grpc: false "
        "on the zone"], r.stdout

    # Safe: the same with access.grpc chosen.
    path, r = check_config(st, "safe", [origin_conf("open", port), origin_conf(
        "legacy", port, access={"protected": True, "grpc": "jwt", "jwt": {
            "jwks": "access/jwks.json", "issuer": ISSUER, "audience": AUDIENCE}})], zones)
    assert r.returncode == 0 and warnings(r) == [], (r.returncode, r.stdout, r.stderr)

    # Broken: mtls named, its CA missing -> exit 2, file:line:col of the key.
    path, r = check_config(st, "broken", [origin_conf("open", port), origin_conf(
        "legacy", port, access={"grpc": "mtls", "mtls": {"ca": "access/missing-ca.pem"}})], zones)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    where = "origins[1].access.mtls.ca" if style == "list" else "origins.legacy.access.mtls.ca"
    assert re.match(re.escape(path) + r":\d+:\d+: " + re.escape(where) + r": cannot read \"access/missing-ca.pem\"",
                    r.stderr), r.stderr

    # Broken material is refused too: a JWKS that is not one, a tokens file with a bad hash, a leaf as CA.
    bad = os.path.join(st.dir, "access")
    write(os.path.join(bad, "bad-jwks.json"), '{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}')
    write(os.path.join(bad, "bad-tokens.yaml"), '- {id: a, salt: "00112233445566778899", hash: "md5:1"}\n')
    for what, access, msg in (
            ("jwks", {"grpc": "jwt", "jwt": {"jwks": "access/bad-jwks.json", "issuer": ISSUER, "audience": "a"}},
             r"access\.jwt\.jwks: .*bad-jwks\.json: keys\[0\]: RSA key is shorter than 2048 bits"),
            ("tokens", {"grpc": "service_token", "service_token": {"tokens_file": "access/bad-tokens.yaml"}},
             r"access\.service_token\.tokens_file: .*bad-tokens\.yaml:1:\d+: hash: hash must start with"),
            ("leaf CA", {"grpc": "mtls", "mtls": {"ca": "certs/edge.pem"}},
             r"access\.mtls\.ca: .*edge\.pem: certificate 1 .* is not a CA certificate"),
            ("mode", {"grpc": "password"}, r"access\.grpc: expected deny, mtls, service_token or jwt"),
            ("key", {"grpc": "deny", "grcp_typo": 1}, r"access\.grcp_typo: unknown key")):
        path, r = check_config(st, f"broken-{what.replace(' ', '-')}",
                               [origin_conf("open", port), origin_conf("legacy", port, access=access)], zones)
        assert r.returncode == 2, (what, r.returncode, r.stdout, r.stderr)
        assert re.match(re.escape(path) + r":\d+:\d+: origins.*" + msg, r.stderr), (what, r.stderr)


def test_proxy_survived(st):
    assert st.proxy.alive()
    assert "warning" not in pclib.tail(st.proxy.err_path, 1000).lower() or \
        "access.grpc is not set" in pclib.tail(st.proxy.err_path, 1000)


if __name__ == "__main__":
    pclib.main(__file__)  # pytest on this file
