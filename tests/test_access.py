"""Access management end to end in Envoy 1.40 (issue 13, docs/access.md):
principals from client certificates and from JWTs Envoy's jwt_authn
verified (keys and tokens made at test time), generic identities, roles,
address allowlists, need-to-know on decrypted fields, and lockout across
Envoy's workers. Nothing a refusal answers reaches the service, and no
principal appears in a log except as a keyed pseudonym."""
from __future__ import annotations

import base64
import http.client
import json
import secrets
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from support.upstream import ScriptedResponse

LOG_KEY = secrets.token_hex(32)
KEYS = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
ISSUER = "https://idp.dpp-guard.test"
AUDIENCE = "dpp-guard-test"
SERVICE_SPIFFE = "spiffe://mesh.test/ns/shop/sa/orders"
DEFAULT_SPIFFE = "spiffe://mesh.test/ns/shop/sa/default"
LOCK_SECONDS = 2
RECORD = {"id": 7, "email": "jane.doe@example.com", "phone": "+1 555 0100"}

POLICY = {
    "version": 1,
    "keys": {"inline": KEYS, "allow_inline_keys_for_testing_only": True},
    "principals": {
        "sources": [
            {"mtls": {"identity": "uri_san"}},
            {"jwt": {"provider": "test-idp", "payload_key": "jwt_payload", "claim": "sub",
                     "roles_claim": "roles"}},
        ],
        "roles": [{"principal": "spiffe://mesh.test/ns/shop/sa/*", "roles": ["support"]}],
    },
    "lockout": {"after": 3, "window_seconds": 60, "duration_seconds": LOCK_SECONDS},
    "routes": [
        {"name": "buyers", "match": {"path": {"prefix": "/buyers/"}},
         "access": {"roles": ["support"], "lockout": True},
         "decrypt": [
             {"direction": "response", "selectors": ["$.email"], "reveal_to": ["pii-reader"]},
             {"direction": "response", "selectors": ["$.phone"], "reveal_to": ["pii-reader"],
              "otherwise": "redact"}]},
        {"name": "seal", "match": {"path": {"prefix": "/seal/"}},
         "encrypt": [{"direction": "response", "selectors": ["$.email", "$.phone"]}]},
        {"name": "internal", "match": {"path": {"prefix": "/internal/"}},
         "access": {"allow_cidrs": ["10.0.0.0/8", "fd00::/8"]}},
    ],
}


# ---- a JWT issuer made at test time (RS256 with openssl, no key on disk in git) ----

def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    def __init__(self, directory: Path):
        self.key = directory / "jwt-signing.key"
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", str(self.key)], check=True, capture_output=True)
        modulus = subprocess.run(["openssl", "rsa", "-in", str(self.key), "-noout", "-modulus"],
                                 check=True, capture_output=True, text=True).stdout
        n = bytes.fromhex(modulus.strip().split("=", 1)[1])
        self.jwks = json.dumps({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "test",
                                          "n": b64u(n), "e": b64u((65537).to_bytes(3, "big"))}]})

    def token(self, sub: str, roles: list[str] | str | None = None, **extra) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": "test"}
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600, **extra}
        if roles is not None:
            claims["roles"] = roles
        signing_input = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{b64u(sig)}"


def add_jwt_and_client_certs(doc: dict, jwks: str, ca: Path) -> None:
    """jwt_authn before dpp_guard (a missing token passes, a bad one is 401),
    and client certificates verified when presented."""
    listener = doc["static_resources"]["listeners"][0]
    chain = listener["filter_chains"][0]
    tls = chain["transport_socket"]["typed_config"]
    tls["require_client_certificate"] = False
    tls["common_tls_context"]["validation_context"] = {"trusted_ca": {"filename": str(ca)}}
    hcm = chain["filters"][0]["typed_config"]
    hcm["http_filters"].insert(0, {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"test-idp": {
                "issuer": ISSUER, "audiences": [AUDIENCE],
                "local_jwks": {"inline_string": jwks},
                "payload_in_metadata": "jwt_payload",
            }},
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
                {"provider_name": "test-idp"}, {"allow_missing": {}}]}}}],
        },
    })


@pytest.fixture(scope="module")
def issuer(tmp_path_factory) -> Issuer:
    return Issuer(tmp_path_factory.mktemp("idp"))


@pytest.fixture
def stack_factory(guard_stack, issuer, pki):
    def make(concurrency: int = 1, responder=None, policy=None):
        return guard_stack(policy=policy or POLICY, env={"DPP_GUARD_LOG_KEY": LOG_KEY}, concurrency=concurrency,
                           responder=responder,
                           edit_bootstrap=lambda d: add_jwt_and_client_certs(d, issuer.jwks, pki.ca_cert))
    return make


def call(stack, path: str, token: str | None = None, cert=None, headers=None):
    """One request on a fresh connection (so Envoy may pick either worker)."""
    ctx = ssl.create_default_context(cafile=str(stack.pki.ca_cert))
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    conn = http.client.HTTPSConnection("127.0.0.1", stack.port, timeout=15, context=ctx)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("host", "localhost")
        if token:
            conn.putheader("authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def events(stack, name: str) -> list[dict]:
    return [json.loads(l.split("dpp_event ", 1)[1]) for l in stack.envoy.plugin_lines()
            if "dpp_event " in l and f'"event":"{name}"' in l]


def wait_events(stack, name: str, n: int, seconds: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + seconds
    while True:
        found = events(stack, name)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def records(stack) -> list[dict]:
    out = []
    for line in stack.access_log().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


# ---- refusals ---------------------------------------------------------------

def test_refusals_have_their_status_and_event_and_reach_nothing(stack_factory, issuer, pki):
    stack = stack_factory()
    default_sa = pki.leaf("default-sa", uris=(DEFAULT_SPIFFE,))
    cases = [
        ("no principal", dict(), 401, "principal_required"),
        ("generic JWT subject", dict(token=issuer.token("Admin", ["support"])), 403,
         "generic_identity_refused"),
        ("generic subject in another case", dict(token=issuer.token("ROOT", ["support"])), 403,
         "generic_identity_refused"),
        ("default service account certificate", dict(cert=default_sa), 403, "generic_identity_refused"),
        ("wrong role", dict(token=issuer.token("erin-x7q", ["viewer", "SUPPORT"])), 403, "access_denied"),
    ]
    for name, kw, status, code in cases:
        before = len(stack.service.requests)
        got, headers, body = call(stack, "/buyers/1", **kw)
        assert (got, json.loads(body)["error"]) == (status, code), name
        assert len(stack.service.requests) == before, f"{name}: the service was reached"
        if status == 401:
            assert headers.get("www-authenticate") == "Bearer"
    got, _, body = call(stack, "/internal/metrics", token=issuer.token("dana", ["support"]))
    assert (got, json.loads(body)["error"]) == (403, "client_address_refused")
    assert not stack.service.requests
    for code in ("principal_required", "generic_identity_refused", "access_denied",
                 "client_address_refused"):
        assert wait_events(stack, code, 1), code
    # A JWT jwt_authn refuses never reaches dpp_guard's decision.
    got, _, _ = call(stack, "/buyers/1", token=issuer.token("dana", ["support"])[:-4] + "AAAA")
    assert got == 401 and not stack.service.requests
    logs = stack.envoy.log() + stack.access_log()
    for clear in ("erin-x7q", DEFAULT_SPIFFE):
        assert clear not in logs, f"{clear} logged in clear"


def test_report_mode_lets_the_same_refusals_through_flagged(stack_factory, issuer, pki):
    """The rollout switch (docs/access.md#report-only-rollout): the refusal set
    above reaches the service, each raising its event with report_only."""
    stack = stack_factory(policy={**POLICY, "mode": "report"})
    default_sa = pki.leaf("default-sa", uris=(DEFAULT_SPIFFE,))
    cases = [
        ("/buyers/1", dict(), "principal_required"),
        ("/buyers/1", dict(token=issuer.token("Admin", ["support"])), "generic_identity_refused"),
        ("/buyers/1", dict(cert=default_sa), "generic_identity_refused"),
        ("/buyers/1", dict(token=issuer.token("erin-x7q", ["viewer"])), "access_denied"),
        ("/internal/metrics", dict(token=issuer.token("dana", ["support"])), "client_address_refused"),
    ]
    for path, kw, code in cases:
        before = len(stack.service.requests)
        got, _, body = call(stack, path, **kw)
        assert len(stack.service.requests) == before + 1, f"{code}: the service was not reached"
        assert got == 200, (code, got, body)
    for code in ("principal_required", "generic_identity_refused", "access_denied",
                 "client_address_refused"):
        found = wait_events(stack, code, 1)
        assert found and all(e.get("report_only") is True for e in found), (code, found)
    assert "erin-x7q" not in stack.envoy.log() + stack.access_log()


def test_principals_from_a_client_certificate_and_a_jwt(stack_factory, issuer, pki):
    stack = stack_factory()
    service = pki.leaf("orders-svc", uris=(SERVICE_SPIFFE,))
    status, _, _ = call(stack, "/buyers/1", cert=service)
    assert status == 200, "the certificate's URI SAN has the mapped role"
    status, _, _ = call(stack, "/buyers/1", token=issuer.token("dana", ["support"]))
    assert status == 200, "the JWT's roles claim (an array)"
    status, _, _ = call(stack, "/buyers/1", token=issuer.token("dana", "support"))
    assert status == 200, "the JWT's roles claim (a string)"
    assert len(stack.service.requests) == 3
    time.sleep(0.3)
    principals = {r.get("principal") for r in records(stack) if r.get("policy_route") == "buyers"}
    assert principals and all(p and p.startswith("p:") for p in principals), principals
    assert "dana" not in stack.access_log() and SERVICE_SPIFFE not in stack.access_log()


# ---- need-to-know -----------------------------------------------------------

def test_an_entitled_role_sees_plaintext_another_the_envelope_or_a_redaction(stack_factory, issuer):
    sealed = {}

    def responder(req):
        if req.path.startswith("/seal/"):
            return ScriptedResponse(body=json.dumps(RECORD).encode())
        return ScriptedResponse(body=json.dumps(sealed["record"]).encode())

    stack = stack_factory(responder=responder)
    status, _, body = call(stack, "/seal/1")
    assert status == 200
    sealed["record"] = json.loads(body)
    assert sealed["record"]["email"] != RECORD["email"]

    status, _, body = call(stack, "/buyers/1", token=issuer.token("dana", ["support", "pii-reader"]))
    assert status == 200
    assert json.loads(body) == RECORD
    status, _, body = call(stack, "/buyers/1", token=issuer.token("sam", ["support"]))
    assert status == 200
    other = json.loads(body)
    assert other["email"] == sealed["record"]["email"], "the envelope is kept"
    assert other["phone"] == "[redacted]"
    assert other["id"] == 7
    time.sleep(0.3)
    actions = [r["actions"] for r in records(stack) if r.get("policy_route") == "buyers"]
    assert [(a["fields_decrypted"], a.get("fields_kept"), a["fields_redacted"]) for a in actions] == \
        [(2, 0, 0), (0, 1, 1)]


# ---- lockout ----------------------------------------------------------------

def test_lockout_across_two_workers_starts_at_n_holds_and_ends(stack_factory, issuer):
    stack = stack_factory(concurrency=2)
    wrong = lambda: issuer.token("erin-x7q", ["viewer"])  # noqa: E731
    right = lambda: issuer.token("erin-x7q", ["support"])  # noqa: E731
    for i in range(3):
        status, _, body = call(stack, "/buyers/1", token=wrong())
        assert (status, json.loads(body)["error"]) == (403, "access_denied"), f"attempt {i}"
    started = wait_events(stack, "lockout_started", 1)
    assert len(started) == 1
    locked_at = time.monotonic()
    status, headers, body = call(stack, "/buyers/1", token=right())
    assert (status, json.loads(body)["error"]) == (403, "principal_locked_out")
    assert 1 <= int(headers["retry-after"]) <= LOCK_SECONDS
    # Holds on every worker (fresh connections), even with the right role.
    for _ in range(4):
        status, _, body = call(stack, "/buyers/1", token=right())
        if time.monotonic() - locked_at < LOCK_SECONDS - 0.5:
            assert (status, json.loads(body)["error"]) == (403, "principal_locked_out")
    # Another principal is not affected.
    status, _, _ = call(stack, "/buyers/1", token=issuer.token("dana", ["support"]))
    assert status == 200
    # Ends after the period: poll.
    deadline = locked_at + LOCK_SECONDS + 3
    while True:
        status, _, _ = call(stack, "/buyers/1", token=right())
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    ended = time.monotonic() - locked_at
    assert status == 200, "the lockout did not end"
    assert ended >= LOCK_SECONDS - 0.5, f"ended after {ended:.2f}s"
    assert len(events(stack, "lockout_started")) == 1
    time.sleep(0.3)
    erin = [r for r in records(stack) if r.get("principal") == started[0]["subject"]]
    assert len({r["worker"] for r in erin}) == 2, "the requests did not spread over both workers"
    assert "erin-x7q" not in stack.envoy.log() + stack.access_log()


# ---- how each identity reaches the filter (docs/access.md, measured) --------

@pytest.mark.parametrize("identity, principal", [
    ("uri_san", "spiffe://mesh.test/ns/shop/sa/reports"),
    ("dns_san", "reports.shop.test"),
    # Envoy renders the subject RFC 2253 style.
    ("subject", "CN=reports-svc"),
])
def test_each_certificate_identity_arrives_as_documented(guard_stack, pki, issuer, identity, principal):
    """The roles map grants the role only to the exact string: a 200 shows
    the property's value is exactly `principal`; a near miss is a 403."""
    leaf = pki.leaf("reports-svc", dns=("reports.shop.test", "localhost"),
                    uris=("spiffe://mesh.test/ns/shop/sa/reports",))
    policy = {
        "version": 1,
        "principals": {"sources": [{"mtls": {"identity": identity}}],
                       "roles": [{"principal": principal, "roles": ["reports"]}]},
        "routes": [{"name": "reports", "match": {"path": {"prefix": "/reports/"}},
                    "access": {"roles": ["reports"]}}],
    }
    stack = guard_stack(policy=policy, env={"DPP_GUARD_LOG_KEY": LOG_KEY},
                        edit_bootstrap=lambda d: add_jwt_and_client_certs(d, issuer.jwks, pki.ca_cert))
    assert call(stack, "/reports/1", cert=leaf)[0] == 200
    status, _, body = call(stack, "/reports/1")
    assert (status, json.loads(body)["error"]) == (401, "principal_required")
