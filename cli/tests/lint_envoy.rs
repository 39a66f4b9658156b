//! `dpp-guard lint-envoy` as a user runs it: the binary, real files, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dpp-guard"))
        .arg("lint-envoy")
        .args(args)
        .output()
        .expect("run dpp-guard")
}

fn json_findings(args: &[&str]) -> (i32, Vec<Value>) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let findings = v["findings"].as_array().cloned().unwrap_or_default();
    assert_eq!(v["count"].as_u64(), Some(findings.len() as u64));
    (out.status.code().unwrap_or(-1), findings)
}

fn codes_and_paths(findings: &[Value]) -> Vec<(String, String)> {
    findings
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn write_temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dpp-lint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn every_finding_is_reported_with_its_path_and_a_fix() {
    let bad = fixture("bad-envoy.yaml");
    let (code, findings) = json_findings(&[bad.to_str().unwrap()]);
    assert_eq!(code, 1, "findings must fail the command");
    let got = codes_and_paths(&findings);
    let hcm = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    let expected = [
        (
            "policy-invalid",
            format!("{hcm}.http_filters[0].typed_config.config.configuration.value"),
        ),
        ("admin-not-loopback", "admin.address.socket_address.address".to_string()),
        ("cluster-without-tls", "static_resources.clusters[0].transport_socket".to_string()),
        (
            "cluster-http-filters",
            "static_resources.clusters[1].typed_extension_protocol_options.envoy.extensions.upstreams.http.v3.HttpProtocolOptions.http_filters".to_string(),
        ),
        (
            "router-without-upstream-guard",
            format!("{hcm}.http_filters[1].typed_config.upstream_http_filters"),
        ),
        ("listener-path-not-normalized", hcm.to_string()),
        (
            "listener-without-tls",
            "static_resources.listeners[0].filter_chains[0].transport_socket".to_string(),
        ),
        (
            "key-material-inline",
            format!("{hcm}.http_filters[0].typed_config.config.vm_config.environment_variables.key_values.DPP_DATA_KEY"),
        ),
        (
            "key-material-inline",
            format!("{hcm}.http_filters[0].typed_config.config.configuration.value -> note"),
        ),
    ];
    for (c, p) in &expected {
        assert!(
            got.contains(&(c.to_string(), p.clone())),
            "missing {c} at {p}; got {got:#?}"
        );
    }
    assert_eq!(got.len(), expected.len(), "no extra findings: {got:#?}");
    for f in &findings {
        assert!(!f["fix"].as_str().unwrap().is_empty());
        assert!(!f["message"].as_str().unwrap().is_empty());
        assert!(f["file"].as_str().unwrap().ends_with("bad-envoy.yaml"));
    }
}

#[test]
fn key_values_are_reported_by_name_without_echoing_the_secret() {
    let out = run(&[fixture("bad-envoy.yaml").to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("fix: "), "{text}");
    assert!(text.contains("9 finding(s)"), "{text}");
    assert!(
        !text.contains("q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k="),
        "the lint must not print the key it found"
    );
}

#[test]
fn json_bootstrap_with_exemption_pin_ecds_guard_and_ipv6_loopback_is_clean() {
    let good = fixture("good-envoy.json");
    let (code, findings) = json_findings(&[good.to_str().unwrap()]);
    assert_eq!((code, findings.len()), (0, 0), "{findings:#?}");
}

#[test]
fn an_exemption_only_covers_the_named_cluster() {
    let text = std::fs::read_to_string(fixture("good-envoy.json"))
        .unwrap()
        .replace(r#"{"name": "legacy"}"#, r#"{"name": "legacy2"}"#);
    let p = write_temp("renamed.json", &text);
    let (code, findings) = json_findings(&[p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        codes_and_paths(&findings),
        vec![(
            "cluster-without-tls".to_string(),
            "static_resources.clusters[1].transport_socket".to_string()
        )]
    );
}

/// Policies are read with the plugin's parser: an exemption in a policy the
/// plugin refuses exempts nothing, and the refusal itself is a finding.
#[test]
fn an_exemption_counts_only_in_a_policy_the_plugin_accepts() {
    let good = std::fs::read_to_string(fixture("good-envoy.json")).unwrap();
    for (broken, field) in [
        // No reason: the plugin refuses the exemption.
        (
            good.replace(
                r#"{\"exempt\":{\"reason\":\"vendor link\"}}"#,
                r#"{\"exempt\":{}}"#,
            ),
            "transport.upstream.clusters.legacy.exempt",
        ),
        // Misspelt field beside it: unknown fields are errors.
        (
            good.replace(r#"\"version\":1,"#, r#"\"version\":1,\"rutes\":[],"#),
            "rutes",
        ),
    ] {
        assert_ne!(broken, good, "the fixture changed");
        let p = write_temp("invalid-policy.json", &broken);
        let (code, findings) = json_findings(&[p.to_str().unwrap()]);
        assert_eq!(code, 1);
        let codes: Vec<&str> = findings
            .iter()
            .map(|f| f["code"].as_str().unwrap())
            .collect();
        assert!(codes.contains(&"policy-invalid"), "{findings:#?}");
        assert!(codes.contains(&"cluster-without-tls"), "{findings:#?}");
        let invalid = findings
            .iter()
            .find(|f| f["code"] == "policy-invalid")
            .unwrap();
        assert!(
            invalid["message"]
                .as_str()
                .unwrap()
                .contains(&format!("field `{field}`")),
            "{invalid:#?}"
        );
    }
}

/// Only dpp_guard's filters carry a policy: another Wasm filter's
/// configuration is neither checked as one nor trusted for exemptions.
#[test]
fn another_wasm_filter_configuration_is_not_a_policy() {
    let good = std::fs::read_to_string(fixture("good-envoy.json")).unwrap();
    let other = good
        .replace(
            r#""root_id": "dpp_upstream_guard""#,
            r#""root_id": "other""#,
        )
        .replace(
            r#"\"version\":1,"#,
            r#"\"version\":1,\"not_a_policy_field\":1,"#,
        );
    assert_ne!(other, good, "the fixture changed");
    let p = write_temp("other-filter.json", &other);
    let (_, findings) = json_findings(&[p.to_str().unwrap()]);
    let codes: Vec<&str> = findings
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(!codes.contains(&"policy-invalid"), "{findings:#?}");
    assert!(codes.contains(&"cluster-without-tls"), "{findings:#?}");
}

#[test]
fn trusted_tls_terminator_in_an_ecds_file_allows_a_plaintext_listener() {
    let bootstrap = std::fs::read_to_string(fixture("good-envoy.json")).unwrap().replace(
        r#""transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
          "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"}},"#,
        "",
    );
    let b = write_temp("plain-listener.json", &bootstrap);
    let (code, findings) = json_findings(&[b.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(findings[0]["code"], "listener-without-tls");

    let ecds = write_temp(
        "dpp-guard.ecds.yaml",
        r#"resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: dpp_guard
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      root_id: dpp_guard
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: '{"version":1,"transport":{"downstream":{"trusted_tls_terminator":true}}}'
"#,
    );
    let (code, findings) = json_findings(&[b.to_str().unwrap(), ecds.to_str().unwrap()]);
    assert_eq!((code, findings.len()), (0, 0), "{findings:#?}");
}

#[test]
fn a_listener_with_dpp_guard_must_normalise_paths() {
    let good = std::fs::read_to_string(fixture("good-envoy.json")).unwrap();
    let hcm = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    for (setting, missing) in [
        (r#""normalize_path": true,"#, "normalize_path: true"),
        (r#""merge_slashes": true,"#, "merge_slashes: true"),
        (
            r#""path_with_escaped_slashes_action": "REJECT_REQUEST","#,
            "path_with_escaped_slashes_action: REJECT_REQUEST",
        ),
    ] {
        assert!(good.contains(setting), "{setting}");
        let p = write_temp("unnormalised.json", &good.replace(setting, ""));
        let (code, findings) = json_findings(&[p.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert_eq!(
            codes_and_paths(&findings),
            vec![("listener-path-not-normalized".to_string(), hcm.to_string())]
        );
        let message = findings[0]["message"].as_str().unwrap();
        assert!(message.contains(missing), "{message}");
    }
    // Escaped slashes forwarded or unescaped are not enough.
    let p = write_temp(
        "keep.json",
        &good.replace("\"REJECT_REQUEST\"", "\"KEEP_UNCHANGED\""),
    );
    assert_eq!(json_findings(&[p.to_str().unwrap()]).0, 1);
}

#[test]
fn unreadable_or_invalid_input_exits_2() {
    assert_eq!(run(&["/nonexistent/envoy.yaml"]).status.code(), Some(2));
    let p = write_temp("broken.yaml", "static_resources: {clusters: [");
    assert_eq!(run(&[p.to_str().unwrap()]).status.code(), Some(2));
    assert_eq!(run(&[]).status.code(), Some(2));
}
