//! `dpp-guard lint-envoy` on access logs: stock fields and the default
//! format are findings; dpp_guard's scrubbed record is not.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const BOOTSTRAP: &str = r#"
static_resources:
  listeners:
  - name: l
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          access_log:
          - name: stock
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/stdout
              log_format:
                text_format_source:
                  inline_string: "[%START_TIME(%Y-%m-%dT%H:%M:%S)%] \"%REQ(:PATH)%\" %DOWNSTREAM_REMOTE_ADDRESS% %RESPONSE_CODE%\n"
          - name: default-format
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
          - name: scrubbed
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/stdout
              log_format:
                json_format:
                  start: "%START_TIME%"
                  status: "%RESPONSE_CODE%"
                  dpp: "%FILTER_STATE(wasm.dpp_access_log:PLAIN)%"
          - name: grpc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig
              common_config: {log_name: x, transport_api_version: V3}
          route_config: {virtual_hosts: []}
"#;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dpp-lint-al-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn access_log_findings(path: &PathBuf) -> Vec<(String, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_dpp-guard"))
        .args(["lint-envoy", "--json"])
        .arg(path)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"].as_str().unwrap().starts_with("access-log"))
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn stock_fields_default_format_and_grpc_are_findings_the_record_is_not() {
    let found = access_log_findings(&write("envoy.yaml", BOOTSTRAP));
    let at = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.access_log";
    let codes: Vec<(&str, String)> = found
        .iter()
        .map(|(c, p, _)| (c.as_str(), p.clone()))
        .collect();
    assert_eq!(
        codes,
        [
            ("access-log-pii", format!("{at}[0].typed_config")),
            ("access-log-default-format", format!("{at}[1].typed_config")),
            ("access-log-pii", format!("{at}[3].typed_config")),
        ]
    );
    let stock = &found[0].2;
    assert!(
        stock.contains("%REQ(:PATH)%") && stock.contains("%DOWNSTREAM_REMOTE_ADDRESS%"),
        "{stock}"
    );
    assert!(
        !stock.contains("START_TIME") && !stock.contains("RESPONSE_CODE"),
        "{stock}"
    );
}

#[test]
fn only_the_scrubbed_record_is_clean() {
    let only_good: String = BOOTSTRAP
        .split("          - name: ")
        .enumerate()
        .filter(|(i, part)| *i == 0 || part.starts_with("scrubbed"))
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                format!("          - name: {part}")
            }
        })
        .collect();
    assert!(only_good.contains("FILTER_STATE") && !only_good.contains("REQ(:PATH)"));
    assert!(access_log_findings(&write("good.yaml", &only_good)).is_empty());
}
