//! `dpp-guard lint-envoy`: finds Envoy configuration mistakes that silently
//! defeat encryption in transit or leak key material.
//!
//! Input: an Envoy bootstrap (YAML or JSON) and optionally the ECDS files it
//! uses (files holding `resources:`); ECDS files referenced by a readable
//! `path_config_source` are followed. Every finding names the path of the
//! offending node in the file and how to fix it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use dpp_core::policy::{ClusterRule, Policy};
use serde_json::Value;

use crate::findings::{finding, load, Doc, Finding};

const WASM_TYPE: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";
const HCM_TYPE: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER_TYPE: &str = "envoy.extensions.filters.http.router.v3.Router";
const UPSTREAM_TLS_TYPE: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const DOWNSTREAM_TLS_TYPE: &str = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const GUARD_ROOT: &str = dpp_core::wire::ROOT_ID;
const UPSTREAM_GUARD_ROOT: &str = dpp_core::wire::UPSTREAM_GUARD_ROOT_ID;

/// A Wasm filter configuration found somewhere, with where it was found.
struct WasmFilter {
    file: String,
    /// Path of the `config` node (the PluginConfig).
    path: String,
    name: String,
    root_id: String,
    config: Value,
}

impl WasmFilter {
    /// One of dpp_guard's two filters: its configuration is a policy.
    fn is_dpp_guard(&self) -> bool {
        self.root_id == GUARD_ROOT || self.root_id == UPSTREAM_GUARD_ROOT
    }

    /// The plugin configuration as Envoy hands it to the module.
    fn configuration(&self) -> Option<&str> {
        self.config.pointer("/configuration/value")?.as_str()
    }
}

/// What the policies of dpp_guard's filters say about the configuration
/// around them, read with the parser the plugin uses (`Policy::from_json`),
/// so lint-envoy and the plugin cannot disagree on what a policy means.
#[derive(Default)]
struct PolicyFacts {
    /// Clusters a policy exempts from the upstream TLS guard.
    exempt: BTreeSet<String>,
    /// A downstream policy declares a trusted TLS terminator in front.
    trusted_terminator: bool,
}

fn read_policies(filters: &[&WasmFilter], out: &mut Vec<Finding>) -> PolicyFacts {
    let mut facts = PolicyFacts::default();
    for w in filters.iter().filter(|w| w.is_dpp_guard()) {
        let Some(text) = w.configuration() else {
            continue;
        };
        let policy = match Policy::from_json(text.as_bytes()) {
            Ok(p) => p,
            Err(e) => {
                out.push(finding(
                    &w.file,
                    "policy-invalid",
                    format!("{}.configuration.value", w.path),
                    format!("the policy of filter {:?} is refused by dpp_guard ({e}): the plugin does not start and Envoy answers 500 on every request it would see", w.name),
                    "fix the field named (docs/policy.md); `dpp-guard validate-policy FILE` checks a policy with the same parser",
                ));
                continue;
            }
        };
        for (name, rule) in &policy.transport.upstream.clusters {
            if matches!(rule, ClusterRule::Exempt { .. }) {
                facts.exempt.insert(name.as_str().to_string());
            }
        }
        if w.root_id == GUARD_ROOT && policy.transport.downstream.trusted_tls_terminator {
            facts.trusted_terminator = true;
        }
    }
    facts
}

/// Lints the given files together: the first bootstrap's ECDS resources may
/// be in the others.
pub fn lint(docs: &[Doc]) -> Vec<Finding> {
    let mut out = Vec::new();
    // ECDS resources: from the files given and from readable path_config_sources.
    let mut ecds: Vec<WasmFilter> = Vec::new();
    let mut seen_paths: BTreeSet<PathBuf> = BTreeSet::new();
    for d in docs {
        collect_ecds(&d.file, &d.value, &mut ecds);
        for p in ecds_paths(&d.value) {
            if seen_paths.insert(p.clone()) {
                if let Ok(extra) = load(&p) {
                    collect_ecds(&extra.file, &extra.value, &mut ecds);
                }
            }
        }
    }
    let mut inline: Vec<WasmFilter> = Vec::new();
    for d in docs {
        collect_inline_wasm(&d.file, &d.value, "", &mut inline);
    }
    let all_wasm: Vec<&WasmFilter> = inline.iter().chain(ecds.iter()).collect();

    // What the policies say, wherever they are.
    let facts = read_policies(&all_wasm, &mut out);

    for w in &all_wasm {
        lint_key_material(w, &mut out);
    }
    for d in docs {
        if d.value.get("resources").is_some() && d.value.get("static_resources").is_none() {
            continue; // an ECDS file: only key material applies, done above
        }
        lint_admin(d, &mut out);
        crate::lint_access_log::lint(d, &mut out);
        lint_clusters(d, &facts.exempt, &mut out);
        lint_listeners(d, &ecds, facts.trusted_terminator, &mut out);
    }
    out
}

fn type_is(v: &Value, ty: &str) -> bool {
    v.get("@type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.rsplit('/').next() == Some(ty))
}

fn arr<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().enumerate())
        .into_iter()
        .flatten()
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

// ---- collecting Wasm filters ---------------------------------------------------

fn collect_ecds(file: &str, doc: &Value, out: &mut Vec<WasmFilter>) {
    for (i, r) in arr(doc, "resources") {
        let Some(tc) = r.get("typed_config") else {
            continue;
        };
        if type_is(tc, WASM_TYPE) {
            if let Some(config) = tc.get("config") {
                out.push(wasm_filter(
                    file,
                    format!("resources[{i}].typed_config.config"),
                    name_of(r),
                    config,
                ));
            }
        }
    }
}

fn wasm_filter(file: &str, path: String, name: &str, config: &Value) -> WasmFilter {
    WasmFilter {
        file: file.to_string(),
        path,
        name: name.to_string(),
        root_id: config
            .get("root_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        config: config.clone(),
    }
}

/// Every inline Wasm HTTP filter anywhere in the document.
fn collect_inline_wasm(file: &str, v: &Value, path: &str, out: &mut Vec<WasmFilter>) {
    match v {
        Value::Object(map) => {
            if let Some(tc) = map.get("typed_config") {
                if type_is(tc, WASM_TYPE) && map.get("resources").is_none() {
                    if let Some(config) = tc.get("config") {
                        out.push(wasm_filter(
                            file,
                            format!("{path}.typed_config.config"),
                            name_of(v),
                            config,
                        ));
                    }
                }
            }
            for (k, child) in map {
                if k == "resources" && path.is_empty() {
                    continue; // ECDS resources are collected separately
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                collect_inline_wasm(file, child, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_inline_wasm(file, child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn ecds_paths(v: &Value) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<PathBuf>) {
        match v {
            Value::Object(map) => {
                if let Some(p) = v
                    .pointer("/config_discovery/config_source/path_config_source/path")
                    .and_then(Value::as_str)
                {
                    if !p.contains("${") {
                        out.push(PathBuf::from(p));
                    }
                }
                map.values().for_each(|c| walk(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

// ---- the checks ---------------------------------------------------------------------

fn lint_admin(d: &Doc, out: &mut Vec<Finding>) {
    let Some(addr) = d.value.pointer("/admin/address/socket_address") else {
        return;
    };
    let host = addr.get("address").and_then(Value::as_str).unwrap_or("");
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        out.push(finding(
            &d.file,
            "admin-not-loopback",
            "admin.address.socket_address.address".into(),
            format!("the admin endpoint listens on {host:?}; anyone reaching it can read /config_dump (plugin configuration, key_values) and stop Envoy"),
            "bind admin to 127.0.0.1 (or a unix pipe) and reach it through kubectl port-forward or a sidecar",
        ));
    }
}

fn lint_clusters(d: &Doc, exempt: &BTreeSet<String>, out: &mut Vec<Finding>) {
    let Some(static_resources) = d.value.get("static_resources") else {
        return;
    };
    for (i, c) in arr(static_resources, "clusters") {
        let name = name_of(c);
        let at = format!("static_resources.clusters[{i}]");
        let tls = c
            .pointer("/transport_socket/typed_config")
            .is_some_and(|tc| type_is(tc, UPSTREAM_TLS_TYPE));
        if !tls && !exempt.contains(name) {
            out.push(finding(
                &d.file,
                "cluster-without-tls",
                format!("{at}.transport_socket"),
                format!("cluster {name:?} has no UpstreamTlsContext: its traffic is plaintext (the upstream guard refuses every request to it)"),
                "add transport_socket envoy.transport_sockets.tls with an UpstreamTlsContext (sni, validation_context with trusted_ca and match_typed_subject_alt_names); or, if plaintext is an accepted risk, exempt the cluster in the policy: transport.upstream.clusters.<name>.exempt.reason",
            ));
        }
        if let Some(opts) = c
            .get("typed_extension_protocol_options")
            .and_then(|o| o.get(HTTP_PROTOCOL_OPTIONS))
        {
            if opts
                .get("http_filters")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty())
            {
                out.push(finding(
                    &d.file,
                    "cluster-http-filters",
                    format!("{at}.typed_extension_protocol_options.{HTTP_PROTOCOL_OPTIONS}.http_filters"),
                    format!("cluster {name:?} has its own upstream http_filters: they replace the router's upstream_http_filters, so the upstream TLS guard does not run for it"),
                    &format!("remove http_filters from the cluster; put upstream filters in the Router's upstream_http_filters, after {UPSTREAM_GUARD_ROOT} and before envoy.filters.http.upstream_codec"),
                ));
            }
        }
    }
}

fn lint_listeners(d: &Doc, ecds: &[WasmFilter], trusted_terminator: bool, out: &mut Vec<Finding>) {
    let Some(static_resources) = d.value.get("static_resources") else {
        return;
    };
    for (i, l) in arr(static_resources, "listeners") {
        let lname = name_of(l);
        let chains = arr(l, "filter_chains")
            .map(|(j, fc)| {
                (
                    format!("static_resources.listeners[{i}].filter_chains[{j}]"),
                    fc,
                )
            })
            .chain(l.get("default_filter_chain").map(|fc| {
                (
                    format!("static_resources.listeners[{i}].default_filter_chain"),
                    fc,
                )
            }));
        for (fc_at, fc) in chains {
            let downstream_tls = fc
                .pointer("/transport_socket/typed_config")
                .is_some_and(|tc| type_is(tc, DOWNSTREAM_TLS_TYPE));
            for (k, f) in arr(fc, "filters") {
                let Some(hcm) = f.get("typed_config").filter(|tc| type_is(tc, HCM_TYPE)) else {
                    continue;
                };
                let hcm_at = format!("{fc_at}.filters[{k}].typed_config");
                let mut guarded = false;
                for (m, hf) in arr(hcm, "http_filters") {
                    let hf_at = format!("{hcm_at}.http_filters[{m}]");
                    if root_of(hf, ecds).as_deref() == Some(GUARD_ROOT) {
                        guarded = true;
                    }
                    let is_router = hf
                        .get("typed_config")
                        .is_some_and(|tc| type_is(tc, ROUTER_TYPE))
                        || name_of(hf) == "envoy.filters.http.router";
                    if is_router {
                        lint_router(&d.file, hf, &hf_at, ecds, out);
                    }
                }
                if guarded {
                    lint_path_normalisation(&d.file, hcm, &hcm_at, lname, out);
                }
                if guarded && !downstream_tls && !trusted_terminator {
                    out.push(finding(
                        &d.file,
                        "listener-without-tls",
                        format!("{fc_at}.transport_socket"),
                        format!("listener {lname:?} serves routes protected by dpp_guard without TLS: protected routes will refuse its requests (403), and anything else travels in clear"),
                        "add a transport_socket with a DownstreamTlsContext to the filter chain; only if a trusted TLS terminator sits in front, declare it in the policy: transport.downstream.trusted_tls_terminator = true",
                    ));
                }
            }
        }
    }
}

/// A listener with dpp_guard must have Envoy read the path the way dpp_guard
/// decides on it (docs/policy.md#paths-normal-form-and-refusals): otherwise
/// Envoy's routing (and the service) may read `//orders` or `/orders%2Fv0`
/// differently from the policy. dpp_guard refuses or normalises such paths
/// itself; these settings make Envoy agree instead of relying on it alone.
fn lint_path_normalisation(
    file: &str,
    hcm: &Value,
    hcm_at: &str,
    listener: &str,
    out: &mut Vec<Finding>,
) {
    let is_true = |key: &str| {
        let v = hcm.get(key);
        // BoolValue: `true`, or `{value: true}` in some dumps.
        v == Some(&Value::Bool(true)) || v.and_then(|v| v.get("value")) == Some(&Value::Bool(true))
    };
    let mut missing = Vec::new();
    if !is_true("normalize_path") {
        missing.push("normalize_path: true");
    }
    if !is_true("merge_slashes") {
        missing.push("merge_slashes: true");
    }
    if hcm
        .get("path_with_escaped_slashes_action")
        .and_then(Value::as_str)
        != Some("REJECT_REQUEST")
    {
        missing.push("path_with_escaped_slashes_action: REJECT_REQUEST");
    }
    if missing.is_empty() {
        return;
    }
    out.push(finding(
        file,
        "listener-path-not-normalized",
        hcm_at.to_string(),
        format!(
            "listener {listener:?} runs dpp_guard without {}: Envoy routes on a path spelling (`//orders`, `/x/../orders`, `/orders%2Fv0`) that dpp_guard must then refuse or rewrite, and a service may read it differently",
            missing.join(", ")
        ),
        "set normalize_path: true, merge_slashes: true and path_with_escaped_slashes_action: REJECT_REQUEST on the HttpConnectionManager (as envoy/dpp-guard.yaml does)",
    ));
}

/// The root id of an http_filters entry: inline Wasm config, or the ECDS
/// resource of the same name, or the entry's name as a last resort.
fn root_of(hf: &Value, ecds: &[WasmFilter]) -> Option<String> {
    if let Some(tc) = hf.get("typed_config").filter(|tc| type_is(tc, WASM_TYPE)) {
        return tc
            .pointer("/config/root_id")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if hf.get("config_discovery").is_some() {
        let name = name_of(hf);
        if let Some(w) = ecds.iter().find(|w| w.name == name) {
            return Some(w.root_id.clone());
        }
        return Some(name.to_string());
    }
    None
}

fn lint_router(file: &str, router: &Value, at: &str, ecds: &[WasmFilter], out: &mut Vec<Finding>) {
    let filters: Vec<&Value> = router
        .pointer("/typed_config/upstream_http_filters")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let has_guard = filters
        .iter()
        .any(|f| root_of(f, ecds).as_deref() == Some(UPSTREAM_GUARD_ROOT));
    if !has_guard {
        out.push(finding(
            file,
            "router-without-upstream-guard",
            format!("{at}.typed_config.upstream_http_filters"),
            format!("the router has no {UPSTREAM_GUARD_ROOT} upstream filter: nothing stops a request from being sent over a plaintext connection"),
            &format!("add to the Router's upstream_http_filters the Wasm filter with root_id {UPSTREAM_GUARD_ROOT} (see envoy/dpp-guard.yaml), followed by envoy.filters.http.upstream_codec"),
        ));
    }
}

/// Names that say "this is a secret".
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "key",
        "secret",
        "token",
        "password",
        "passwd",
        "credential",
        "private",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Values that look like key material: PEM, or a long random-looking
/// base64/hex string. Environment variable names (UPPER_SNAKE) are not.
fn looks_like_key(value: &str) -> bool {
    if value.contains("-----BEGIN") {
        return true;
    }
    let v = value.trim();
    if v.len() < 32
        || v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return false;
    }
    let alphabet = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'));
    let digits = v.bytes().any(|b| b.is_ascii_digit());
    let letters = v.bytes().any(|b| b.is_ascii_alphabetic());
    alphabet && digits && letters
}

fn lint_key_material(w: &WasmFilter, out: &mut Vec<Finding>) {
    let kv_at = format!("{}.vm_config.environment_variables.key_values", w.path);
    if let Some(kv) = w
        .config
        .pointer("/vm_config/environment_variables/key_values")
        .and_then(Value::as_object)
    {
        for (k, v) in kv {
            let value = v.as_str().unwrap_or("");
            if secret_name(k) || looks_like_key(value) {
                out.push(finding(
                    &w.file,
                    "key-material-inline",
                    format!("{kv_at}.{k}"),
                    format!("key_values entry {k:?} of filter {:?} looks like key material; Envoy's admin /config_dump prints key_values in clear", w.name),
                    "remove it from key_values; set the variable in Envoy's own environment (a Kubernetes Secret) and list its name in vm_config.environment_variables.host_env_keys",
                ));
            }
        }
    }
    let Some(text) = w
        .config
        .pointer("/configuration/value")
        .and_then(Value::as_str)
    else {
        return;
    };
    let cfg_at = format!("{}.configuration.value", w.path);
    let mut hits = Vec::new();
    match serde_json::from_str::<Value>(text) {
        Ok(v) => scan_json(&v, "", &mut hits),
        Err(_) => {
            if looks_like_key(text) {
                hits.push(String::new());
            }
        }
    }
    for h in hits {
        let mut path = cfg_at.clone();
        if !h.is_empty() {
            let _ = write!(path, " -> {h}");
        }
        out.push(finding(
            &w.file,
            "key-material-inline",
            path,
            format!("the configuration of filter {:?} holds what looks like key material; Envoy's admin /config_dump prints plugin configuration in clear", w.name),
            "never put keys in the plugin configuration: pass them through vm_config.environment_variables.host_env_keys from Envoy's environment",
        ));
    }
}

/// JSON paths of string leaves that look like keys (by value, or by a
/// secret-sounding field name holding a key-looking or long value).
fn scan_json(v: &Value, path: &str, hits: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if let Value::String(s) = child {
                    // A pinned certificate digest is public, not a secret.
                    if k == "sha256" && path.ends_with("pin") {
                        continue;
                    }
                    if looks_like_key(s) || (secret_name(k) && s.len() >= 16 && !is_env_name(s)) {
                        hits.push(p);
                        continue;
                    }
                }
                scan_json(child, &p, hits);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                scan_json(child, &format!("{path}[{i}]"), hits);
            }
        }
        Value::String(s) if looks_like_key(s) => hits.push(path.to_string()),
        _ => {}
    }
}

fn is_env_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}
