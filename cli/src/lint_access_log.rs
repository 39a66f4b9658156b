//! The access-log part of `lint-envoy`: access loggers that print request
//! data. Envoy's stock fields carry PII under the data protection policy
//! (query strings, client addresses, user-agent, cookies); dpp_guard's
//! scrubbed record (`%FILTER_STATE(wasm.dpp_access_log:PLAIN)%`) is the
//! request data a log may hold (docs/logging.md).

use dpp_core::wire::{ACCESS_LOG_FILTER_STATE, ACCESS_LOG_FORMAT_OPERATOR};
use serde_json::Value;

use crate::findings::{Doc, Finding};

/// Operators that print nothing a client chose or that identifies a person.
const SAFE: &[&str] = &[
    "START_TIME",
    "RESPONSE_CODE",
    "RESPONSE_FLAGS",
    "RESPONSE_FLAGS_LONG",
    "RESPONSE_CODE_DETAILS",
    "DURATION",
    "REQUEST_DURATION",
    "REQUEST_TX_DURATION",
    "RESPONSE_DURATION",
    "RESPONSE_TX_DURATION",
    "BYTES_RECEIVED",
    "BYTES_SENT",
    "PROTOCOL",
    "UPSTREAM_PROTOCOL",
    "UPSTREAM_CLUSTER",
    "ROUTE_NAME",
    "VIRTUAL_CLUSTER_NAME",
    "UPSTREAM_TRANSPORT_FAILURE_REASON",
    "DOWNSTREAM_TLS_VERSION",
    "UPSTREAM_TLS_VERSION",
    "CONNECTION_ID",
    "STREAM_ID",
    "HOSTNAME",
];

/// The one filter-state object that is safe to print: the scrubbed record
/// (`FILTER_STATE(wasm.dpp_access_log` with any serializer and length).
fn is_record(op: &str) -> bool {
    op.strip_prefix("FILTER_STATE(")
        .and_then(|rest| rest.strip_prefix(ACCESS_LOG_FILTER_STATE))
        .is_some_and(|rest| rest.starts_with([':', ')']))
}

/// `%OPERATOR%` tokens in a format string: a name, an optional `(...)`
/// argument (which may itself hold `%`, as in `%START_TIME(%s)%`), an
/// optional `:LEN`. `%%` is a literal percent.
fn operators(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        while j < b.len() && (b[j].is_ascii_uppercase() || b[j].is_ascii_digit() || b[j] == b'_') {
            j += 1;
        }
        if j == start {
            i = start + usize::from(b.get(start) == Some(&b'%'));
            continue;
        }
        if b.get(j) == Some(&b'(') {
            match text[j..].find(')') {
                Some(close) => j += close + 1,
                None => break,
            }
        }
        if b.get(j) == Some(&b':') {
            j += 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
        }
        if b.get(j) == Some(&b'%') {
            out.push(text[start..j].to_string());
            i = j + 1;
        } else {
            i = start;
        }
    }
    out
}

fn is_safe(op: &str) -> bool {
    if is_record(op) {
        return true;
    }
    let name = op.split(['(', ':']).next().unwrap_or(op);
    // Only START_TIME takes a harmless argument (a strftime format).
    SAFE.contains(&name) && (!op.contains('(') || name == "START_TIME")
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn type_name(tc: &Value) -> &str {
    tc.get("@type")
        .and_then(Value::as_str)
        .and_then(|t| t.rsplit('/').next())
        .unwrap_or("")
}

/// Checks every `access_log` list anywhere in the file.
pub fn lint(d: &Doc, out: &mut Vec<Finding>) {
    walk(d, &d.value, String::new(), out);
}

fn walk(d: &Doc, v: &Value, at: String, out: &mut Vec<Finding>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                if k == "access_log" {
                    if let Value::Array(logs) = x {
                        for (i, log) in logs.iter().enumerate() {
                            check(d, log, format!("{here}[{i}]"), out);
                        }
                    }
                } else {
                    walk(d, x, here, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(d, x, format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn check(d: &Doc, log: &Value, at: String, out: &mut Vec<Finding>) {
    let tc = log.get("typed_config").unwrap_or(&Value::Null);
    let ty = type_name(tc);
    let fix = format!("print only dpp_guard's scrubbed record: log_format.text_format_source.inline_string \"{ACCESS_LOG_FORMAT_OPERATOR}\\n\" (docs/logging.md); %START_TIME%, %RESPONSE_CODE%, %DURATION% and similar are fine");
    if ty.ends_with("HttpGrpcAccessLogConfig") || ty.ends_with("TcpGrpcAccessLogConfig") {
        out.push(Finding {
            file: d.file.clone(),
            code: "access-log-pii",
            path: format!("{at}.typed_config"),
            message: "the gRPC access log service always sends the request path, the client address and request headers: PII under the data protection policy".into(),
            fix: format!("use the file, stdout or OpenTelemetry access logger with a format that prints {ACCESS_LOG_FORMAT_OPERATOR}"),
        });
        return;
    }
    let format_keys = ["log_format", "format", "json_format", "typed_json_format"];
    let is_file_like = ty.ends_with("FileAccessLog")
        || ty.ends_with("StdoutAccessLog")
        || ty.ends_with("StderrAccessLog");
    if is_file_like && !format_keys.iter().any(|k| tc.get(*k).is_some()) {
        out.push(Finding {
            file: d.file.clone(),
            code: "access-log-default-format",
            path: format!("{at}.typed_config"),
            message: "an access log without a format uses Envoy's default, which prints the path with its query string, user-agent, x-forwarded-for and the upstream host".into(),
            fix,
        });
        return;
    }
    let mut texts = Vec::new();
    strings(tc, &mut texts);
    let mut unsafe_ops: Vec<String> = texts
        .iter()
        .flat_map(|t| operators(t))
        .filter(|op| !is_safe(op))
        .collect();
    unsafe_ops.sort();
    unsafe_ops.dedup();
    if !unsafe_ops.is_empty() {
        let list = unsafe_ops
            .iter()
            .map(|o| format!("%{o}%"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Finding {
            file: d.file.clone(),
            code: "access-log-pii",
            path: format!("{at}.typed_config"),
            message: format!("the access log prints {list}: request data that can carry PII (query strings, addresses, device data, cookies) unscrubbed"),
            fix,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_operators_and_skips_literal_percents() {
        assert_eq!(
            operators("100%% [%START_TIME%] \"%REQ(:PATH)%\" %BYTES_SENT% %UPSTREAM_HOST%"),
            ["START_TIME", "REQ(:PATH)", "BYTES_SENT", "UPSTREAM_HOST"]
        );
        assert!(is_safe("FILTER_STATE(wasm.dpp_access_log:PLAIN)"));
        assert!(is_safe("FILTER_STATE(wasm.dpp_access_log)"));
        assert!(!is_safe("FILTER_STATE(wasm.dpp_access_log_raw:PLAIN)"));
        assert_eq!(
            operators("[%START_TIME(%Y-%m-%dT%H:%M:%S)%] %REQ(USER-AGENT):64% 5%"),
            ["START_TIME(%Y-%m-%dT%H:%M:%S)", "REQ(USER-AGENT):64"]
        );
        assert!(is_safe("START_TIME(%s)"));
        assert!(!is_safe("FILTER_STATE(other:PLAIN)"));
        assert!(!is_safe("REQ(USER-AGENT)"));
        assert!(!is_safe("DOWNSTREAM_REMOTE_ADDRESS"));
    }
}
