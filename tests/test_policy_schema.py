"""The policy JSON Schema and the plugin's own parser agree on every shipped
example and on known-bad documents."""
from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest
import yaml

from support.paths import ENVOY_DIR, ROOT

SCHEMA = json.loads((ROOT / "schema" / "policy.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
CLI = ROOT / "target" / "debug" / "dpp-guard"


def shipped_policies():
    """Every policy a user can copy: envoy/policies/*.json, the policies inside
    envoy/*.ecds.yaml, and docs/examples/*.json."""
    out = []
    for p in sorted((ENVOY_DIR / "policies").glob("*.json")) + sorted((ROOT / "docs" / "examples").glob("*.json")):
        out.append(pytest.param(p.read_text(), id=str(p.relative_to(ROOT))))
    for ecds in sorted(ENVOY_DIR.glob("*.ecds.yaml")):
        doc = yaml.safe_load(ecds.read_text())
        for r in doc["resources"]:
            cfg = r["typed_config"]["config"]
            if cfg.get("root_id") in ("dpp_guard", "dpp_upstream_guard"):
                out.append(pytest.param(cfg["configuration"]["value"], id=f"{ecds.name}:{r['name']}"))
    return out


INVALID = [
    ('{"version":1,"routes":[{"name":"a","kill_swich":true}]}', "routes[0].kill_swich"),
    ('{"version":2}', "version"),
    ('{"routes":[]}', "."),
    ('{"version":1,"routes":[{"name":"a","match":{"path":{"prefix":"x"}}}]}', "routes[0].match.path.prefix"),
    ('{"version":1,"routes":[{"name":"a","match":{"path":{"prefix":"/a//b"}}}]}', "routes[0].match.path.prefix"),
    ('{"version":1,"routes":[{"name":"a","match":{"path":{"exact":"/%6frders"}}}]}', "routes[0].match.path.exact"),
    ('{"version":1,"routes":[{"name":"a","match":{"path":{"prefix":"/a%2fb"}}}]}', "routes[0].match.path.prefix"),
    ('{"version":1,"routes":[{"name":"a","match":{"case_sensitive":"yes"}}]}', "routes[0].match.case_sensitive"),
    ('{"version":1,"requests":{"unmatched":"drop"}}', "requests.unmatched"),
    ('{"version":1,"requests":{"non_normal_path":"fix"}}', "requests.non_normal_path"),
    ('{"version":1,"requests":{"default":"deny"}}', "requests.default"),
    ('{"version":1,"routes":[{"name":"a","match":{"path":{"prefix":"/a","exact":"/b"}}}]}', "routes[0].match.path"),
    ('{"version":1,"routes":[{"name":"a","match":{"methods":[]}}]}', "routes[0].match.methods"),
    ('{"version":1,"routes":[{"name":""}]}', "routes[0].name"),
    ('{"version":1,"routes":[{"name":"a","no_store":"yes"}]}', "routes[0].no_store"),
    # field encryption
    ('{"version":1,"keys":{"inline":"k1=AAAA"}}', "keys.inline"),
    ('{"version":1,"keys":{"env":"K","inline":"k1=AAAA"}}', "keys"),
    ('{"version":1,"routes":[{"name":"a","encrypt":[{"direction":"request","preset":"sp-api-orders"}]}]}', "keys"),
    ('{"version":1,"keys":{"env":"K"},"routes":[{"name":"a","encrypt":[{"direction":"request"}]}]}',
     "routes[0].encrypt[0].selectors"),
    ('{"version":1,"keys":{"env":"K"},"routes":[{"name":"a","encrypt":[{"direction":"up","selectors":["$.a"]}]}]}',
     "routes[0].encrypt[0].direction"),
    ('{"version":1,"keys":{"env":"K"},"routes":[{"name":"a","decrypt":[{"direction":"request","selectors":["$.a"],"mode":"random"}]}]}',
     "routes[0].decrypt[0].mode"),
    ('{"version":1,"routes":[{"name":"a","body":{"max_bytes":10}}]}', "routes[0].body"),
    ('{"version":1,"keys":{"env":"K"},"routes":[{"name":"a","encrypt":[{"direction":"request","selectors":["$.a"]}],"body":{"content_encoding":"pass"}}]}',
     "routes[0].body.content_encoding"),
    ('{"version":1,"transport":{"upstream":{"min_tls_version":"TLSv1.1"}}}', "transport.upstream.min_tls_version"),
    ('{"version":1,"transport":{"upstream":{"connect_wait_ms":0}}}', "transport.upstream.connect_wait_ms"),
    ('{"version":1,"transport":{"upstream":{"clusters":{"a":{}}}}}', "transport.upstream.clusters.a"),
    ('{"version":1,"transport":{"upstream":{"clusters":{"a":{"exempt":{"reason":""}}}}}}',
     "transport.upstream.clusters.a.exempt.reason"),
    ('{"version":1,"transport":{"upstream":{"clusters":{"a":{"pin":{"sha256":"00"}}}}}}',
     "transport.upstream.clusters.a.pin.sha256"),
    ('{"version":1,"transport":{"downstream":{"trusted":true}}}', "transport.downstream.trusted"),
    ('{"version":1,"logging":{"log_key_env":"1BAD"}}', "logging.log_key_env"),
    ('{"version":1,"logging":{"plugin_logs":true}}', "logging.plugin_logs"),
    ('{"version":1,"logging":{"request_headers":["a b"]}}', "logging.request_headers[0]"),
    ('{"version":1,"logging":{"pii_keys":["--"]}}', "logging.pii_keys[0]"),
    ('{"version":1,"logging":{"principal_header":"x y"}}', "logging.principal_header"),
    # monitoring (docs/monitoring.md)
    ('{"version":1,"mode":"audit"}', "mode"),
    ('{"version":1,"routes":[{"name":"a","mode":"off"}]}', "routes[0].mode"),
    ('{"version":1,"transport":{"upstream":{"mode":"dry-run"}}}', "transport.upstream.mode"),
    ('{"version":1,"monitoring":{"canaries":[{"digest":"ORD-1","label":"a"}]}}', "monitoring.canaries[0].digest"),
    ('{"version":1,"monitoring":{"canaries":[{"digest":"' + "ab" * 32 + '","label":"a b"}]}}',
     "monitoring.canaries[0].label"),
    ('{"version":1,"monitoring":{"canaries":[{"value":"ORD-1","label":"a"}]}}', "monitoring.canaries[0].value"),
    ('{"version":1,"monitoring":{"unauthorized_burst":{"count":0,"window_seconds":60}}}',
     "monitoring.unauthorized_burst.count"),
    ('{"version":1,"routes":[{"name":"a","limits":{"requests":{"max":0,"window_seconds":60}}}]}',
     "routes[0].limits.requests.max"),
    ('{"version":1,"routes":[{"name":"a","limits":{"response_bytes":{"max":9,"window_seconds":0}}}]}',
     "routes[0].limits.response_bytes.window_seconds"),
    ('{"version":1,"routes":[{"name":"a","limits":{"bytes":{"max":9,"window_seconds":9}}}]}',
     "routes[0].limits.bytes"),
    # access management (docs/access.md)
    ('{"version":1,"principals":{"sources":[]}}', "principals.sources"),
    ('{"version":1,"principals":{"sources":[{"mtls":{"identity":"cn"}}]}}', "principals.sources[0].mtls.identity"),
    ('{"version":1,"principals":{"sources":[{"header":{"name":"X-User","set_by":"gw"}}]}}',
     "principals.sources[0].header.name"),
    ('{"version":1,"principals":{"sources":[{"mtls":{"identity":"uri_san"}}],"roles":[{"principal":"a","roles":[]}]}}',
     "principals.roles[0].roles"),
    ('{"version":1,"client_address":{"source":"x-forwarded-for"}}', "client_address.trusted_hops"),
    ('{"version":1,"client_address":{"source":"socket","trusted_hops":1}}', "client_address.trusted_hops"),
    ('{"version":1,"lockout":{"after":0,"window_seconds":60,"duration_seconds":60}}', "lockout.after"),
    ('{"version":1,"routes":[{"name":"a","access":{"rolez":["x"]}}]}', "routes[0].access.rolez"),
    ('{"version":1,"routes":[{"name":"a","access":{"allow_cidrs":["ten"]}}]}', "routes[0].access.allow_cidrs[0]"),
    ('{"version":1,"keys":{"env":"K"},"routes":[{"name":"a","decrypt":[{"direction":"response","selectors":["$.a"],"reveal_to":["r"],"otherwise":"hide"}]}]}',
     "routes[0].decrypt[0].otherwise"),
]


def cli_validate(text: str, tmp_path) -> subprocess.CompletedProcess:
    f = tmp_path / "policy.json"
    f.write_text(text)
    return subprocess.run([str(CLI), "validate-policy", str(f)], capture_output=True, text=True)


@pytest.mark.parametrize("text", shipped_policies())
def test_shipped_policy_is_valid_for_schema_and_plugin(text, tmp_path):
    VALIDATOR.validate(json.loads(text))
    r = cli_validate(text, tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("text, field", INVALID, ids=[f for _, f in INVALID])
def test_invalid_policy_is_refused_by_schema_and_plugin(text, field, tmp_path):
    assert list(VALIDATOR.iter_errors(json.loads(text))), "schema accepted a bad policy"
    r = cli_validate(text, tmp_path)
    assert r.returncode == 1
    assert f"field `{field}`" in r.stderr, r.stderr


@pytest.mark.parametrize("ecds, policy", [("dpp-guard.ecds.yaml", "orders.json"),
                                          ("hop-a-encrypt.ecds.yaml", "hop-a-encrypt.json"),
                                          ("hop-b-decrypt.ecds.yaml", "hop-b-decrypt.json")])
def test_the_ecds_policy_is_the_example_file(ecds, policy):
    doc = yaml.safe_load((ENVOY_DIR / ecds).read_text())
    inline = doc["resources"][0]["typed_config"]["config"]["configuration"]["value"]
    assert json.loads(inline) == json.loads((ENVOY_DIR / "policies" / policy).read_text())
