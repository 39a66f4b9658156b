//! Scenario files: a plugin configuration, an environment, a scripted
//! upstream and a sequence of streams with expectations. The same file runs
//! here ([`run`]) and against a real Envoy (tests/test_scenarios.py, which
//! checks Envoy's observations with [`check`]), so both sides are held to
//! one set of expectations and compared with each other.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use dpp_core::wire;
use serde::{Deserialize, Serialize};

use crate::properties::Value;
use crate::{LogLevel, Node, Plugin, Vm, VmConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub plugin: PluginSpec,
    /// The service's answer, unless a stream scripts its own.
    #[serde(default)]
    pub upstream: Option<ResponseSpec>,
    #[serde(default)]
    pub startup: StartupExpect,
    pub streams: Vec<StreamSpec>,
    /// Why this scenario cannot run against Envoy (it drives the virtual
    /// clock, picks workers, or injects verified identities): the end-to-end
    /// suite runs it in the harness only, and a test of its own covers the
    /// same behaviour in Envoy.
    #[serde(default)]
    pub harness_only: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// The plugin configuration: an object or array is sent as JSON, a
    /// string verbatim (so invalid JSON can be tested).
    #[serde(default)]
    pub config: serde_json::Value,
    /// Environment variables the VM sees (Envoy: vm_config.environment_variables).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Harness only: extra properties. The defaults mirror envoy/dpp-guard.yaml.
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    /// The module the scenario is written for, relative to the scenario
    /// file (e.g. a harness test module). Absent: dpp_guard (the runner's
    /// `--wasm`, by default `make build`'s dpp_guard.wasm).
    #[serde(default)]
    pub wasm: Option<PathBuf>,
    /// Envoy's `root_id`. Default: `dpp_guard` for dpp_guard, empty
    /// (Envoy's default) for another module.
    #[serde(default)]
    pub root_id: Option<String>,
    /// Envoy's `vm_config.vm_id`. Default: `dpp_guard` for dpp_guard, empty
    /// for another module.
    #[serde(default)]
    pub vm_id: Option<String>,
    /// Also run the module as the router's upstream filter (root id
    /// dpp_upstream_guard), as envoy/dpp-guard.yaml does. Default: true
    /// for dpp_guard, false for another module.
    #[serde(default)]
    pub upstream_filter: Option<bool>,
    /// Harness only: how many workers (listener-filter VMs on one node,
    /// sharing shared data as Envoy's worker threads do). Default 1.
    #[serde(default)]
    pub workers: Option<usize>,
}

/// How a scenario's module is set up in Envoy, resolved from the scenario
/// and its defaults. The harness reports it with its observations
/// ([`Observed::setup`]) and the end-to-end suite configures Envoy from
/// it, so both sides run the same module with the same ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// The module that ran (None: not known to this side).
    #[serde(default)]
    pub module: Option<PathBuf>,
    pub root_id: String,
    pub vm_id: String,
    /// Root id of the router's upstream filter; None: no upstream filter.
    #[serde(default)]
    pub upstream_root_id: Option<String>,
}

impl PluginSpec {
    /// The scenario runs dpp_guard (it names no other module).
    pub fn runs_dpp_guard(&self) -> bool {
        self.wasm.is_none()
    }

    /// Ids and filters as Envoy gets them; dpp_guard's names only for dpp_guard.
    pub fn setup(&self) -> Setup {
        let dpp = self.runs_dpp_guard();
        let default_id = |id: &str| if dpp { id.to_string() } else { String::new() };
        Setup {
            module: self.wasm.clone(),
            root_id: self
                .root_id
                .clone()
                .unwrap_or_else(|| default_id(wire::ROOT_ID)),
            vm_id: self
                .vm_id
                .clone()
                .unwrap_or_else(|| default_id(wire::VM_ID)),
            upstream_root_id: self
                .upstream_filter
                .unwrap_or(dpp)
                .then(|| wire::UPSTREAM_GUARD_ROOT_ID.to_string()),
        }
    }

    pub fn config_bytes(&self) -> Vec<u8> {
        match &self.config {
            serde_json::Value::String(s) => s.as_bytes().to_vec(),
            serde_json::Value::Null => Vec::new(),
            v => v.to_string().into_bytes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    #[serde(default = "default_status")]
    pub status: u32,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub json: Option<serde_json::Value>,
}

fn default_status() -> u32 {
    200
}

impl Default for ResponseSpec {
    /// What tests/support/upstream.py answers by default.
    fn default() -> Self {
        ResponseSpec {
            status: 200,
            headers: [("content-type".to_string(), "application/json".to_string())].into(),
            body: Some("{\"ok\":true}".into()),
            json: None,
        }
    }
}

fn body_of(body: &Option<String>, json: &Option<serde_json::Value>) -> Option<Vec<u8>> {
    match (body, json) {
        (Some(b), _) => Some(b.as_bytes().to_vec()),
        // Compact, keys sorted: Python's json.dumps(sort_keys=True, separators=(",", ":")).
        (None, Some(j)) => Some(j.to_string().into_bytes()),
        (None, None) => None,
    }
}

impl ResponseSpec {
    pub fn body_bytes(&self) -> Vec<u8> {
        body_of(&self.body, &self.json).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
    /// The Host / :authority header.
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// Harness only: deliver the body in these chunks (Envoy gets them joined).
    #[serde(default)]
    pub chunks: Option<Vec<String>>,
}

fn default_method() -> String {
    "GET".into()
}
fn default_host() -> String {
    "localhost".into()
}

impl RequestSpec {
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        if let Some(c) = &self.chunks {
            return Some(c.concat().into_bytes());
        }
        body_of(&self.body, &self.json)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    pub name: String,
    pub request: RequestSpec,
    /// Harness only: properties of this stream for the listener filter
    /// (e.g. `source.address`), on top of the defaults.
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    #[serde(default)]
    pub upstream: Option<ResponseSpec>,
    #[serde(default)]
    pub expect: Expect,
    /// Harness only: the worker (0-based, below `plugin.workers`) whose VM
    /// handles this stream. Default 0.
    #[serde(default)]
    pub worker: Option<usize>,
    /// Harness only: advance every VM's virtual clock by this many seconds
    /// before the stream (on_tick fires as it would).
    #[serde(default)]
    pub advance_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: Option<u32>,
    /// Response headers that must have exactly these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub absent_headers: Vec<String>,
    pub body: Option<String>,
    /// The response body parsed as JSON must equal this.
    pub json: Option<serde_json::Value>,
    /// true: answered by the filter (or Envoy for it), nothing reached the service.
    pub local_reply: Option<bool>,
    /// `none`, or what the service received.
    pub upstream: Option<UpstreamExpect>,
    /// true: the filter must trap (harness only: Envoy shows just the 503).
    pub trap: Option<bool>,
    #[serde(default)]
    pub logs: LogExpect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UpstreamExpect {
    /// `upstream: none`
    Nothing(NoneWord),
    Received(Box<ReceivedExpect>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoneWord {
    None,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceivedExpect {
    pub method: Option<String>,
    pub path: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub absent_headers: Vec<String>,
    pub body: Option<String>,
    pub json: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogExpect {
    /// Each string must appear in some plugin log line of this step.
    #[serde(default)]
    pub contains: Vec<String>,
    /// No plugin log line of this step may contain any of these.
    #[serde(default)]
    pub not_contains: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartupExpect {
    /// false: the plugin must refuse its configuration.
    pub configured: Option<bool>,
    #[serde(default)]
    pub logs: LogExpect,
}

/// What one side (harness or Envoy) observed. Serialized as JSON between
/// the harness and the end-to-end suite.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub scenario: String,
    /// Observed by the harness (which also sees traps and problems).
    #[serde(default)]
    pub harness: bool,
    /// None when the side cannot tell (Envoy).
    #[serde(default)]
    pub configured: Option<bool>,
    /// How the module was set up (the harness reports it; the end-to-end
    /// suite configures Envoy from it).
    #[serde(default)]
    pub setup: Option<Setup>,
    #[serde(default)]
    pub startup_logs: Vec<String>,
    pub streams: Vec<ObservedStream>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedStream {
    pub name: String,
    pub status: Option<u32>,
    /// Lower-case names, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub local_reply: bool,
    pub upstream: Option<ObservedUpstream>,
    #[serde(default)]
    pub logs: Vec<String>,
    /// Harness only: behaviour that would break in Envoy.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Harness only: the trap, with its wasm backtrace.
    #[serde(default)]
    pub trap: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedUpstream {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Reads a scenario file; `plugin.wasm` is resolved against its directory.
pub fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut s: Scenario =
        serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(wasm) = &s.plugin.wasm {
        let dir = path.parent().unwrap_or(Path::new(""));
        s.plugin.wasm = Some(dir.join(wasm));
    }
    Ok(s)
}

/// What Envoy gives the filter in the test suite's configuration
/// (envoy/dpp-guard.yaml, whatever the module): the listener, route and
/// cluster names, the node id, and the scenario's ids.
fn envoy_like_config(s: &Scenario, setup: &Setup, root_id: &str) -> VmConfig {
    let mut c = VmConfig::new()
        .plugin_config(s.plugin.config_bytes())
        .vm_id(&setup.vm_id)
        .root_id(root_id)
        .log_level(LogLevel::Info)
        .property("xds.route_name", "service")
        .property("xds.cluster_name", "service")
        .property("xds.virtual_host_name", "service")
        .property("xds.node.id", "dpp-guard");
    // The suite names each Envoy plugin after its root id.
    c.plugin_name = root_id.into();
    // The shipped listener and cluster both speak TLS (the Python client
    // negotiates TLS 1.3); upstream.* appear once a connection exists.
    c.stream_properties
        .set("connection.tls_version", "TLSv1.3")
        .set("connection.mtls", false);
    for (k, v) in &s.plugin.env {
        c = c.env(k, v);
    }
    for (k, v) in &s.plugin.properties {
        c = c.property(k, v.clone());
    }
    c
}

/// Envoy as envoy/dpp-guard.yaml builds it: the module as the listener's
/// filter and, for dpp_guard unless the scenario says otherwise, as the
/// router's upstream filter (root id dpp_upstream_guard), one VM each, in
/// front of one service reached over TLS.
struct Chain {
    down: Vm,
    /// The other workers' listener VMs (`plugin.workers` > 1).
    others: Vec<Vm>,
    up: Option<Vm>,
    /// Envoy's connection pool: the first request opens the connection,
    /// later ones reuse it.
    pooled: bool,
}

/// Runs a scenario in the harness and returns what it observed.
///
/// `plugin` is the module the scenario is written for: load `plugin.wasm`
/// when the scenario names one ([`PluginSpec::wasm`]), dpp_guard otherwise.
pub fn run(plugin: &Plugin, s: &Scenario) -> Result<Observed, crate::Error> {
    let setup = s.plugin.setup();
    let node = Node::new();
    let down = Vm::start(plugin, &node, envoy_like_config(s, &setup, &setup.root_id))?;
    let up = match &setup.upstream_root_id {
        Some(root_id) => Some(Vm::start(
            plugin,
            &node,
            envoy_like_config(s, &setup, root_id),
        )?),
        None => None,
    };
    let mut startup_logs: Vec<String> = down.logs().iter().map(|l| l.message.clone()).collect();
    if let Some(up) = &up {
        startup_logs.extend(up.logs().iter().map(|l| l.message.clone()));
    }
    let mut obs = Observed {
        scenario: s.name.clone(),
        harness: true,
        configured: Some(down.configured() && up.as_ref().is_none_or(Vm::configured)),
        setup: Some(setup),
        startup_logs,
        streams: Vec::new(),
    };
    let mut others = Vec::new();
    for _ in 1..s.plugin.workers.unwrap_or(1).max(1) {
        others.push(Vm::start(
            plugin,
            &node,
            envoy_like_config(s, &setup_of(&obs), &setup_of(&obs).root_id),
        )?);
    }
    let mut chain = Chain {
        down,
        others,
        up,
        pooled: false,
    };
    for step in &s.streams {
        if let Some(secs) = step.advance_seconds {
            let by = std::time::Duration::from_secs(secs);
            chain.down.advance(by)?;
            for vm in &mut chain.others {
                vm.advance(by)?;
            }
            if let Some(up) = &mut chain.up {
                up.advance(by)?;
            }
        }
        // Another worker's VM takes the stream: swapped in for it.
        let worker = step.worker.unwrap_or(0);
        if worker > chain.others.len() {
            return Err(crate::Error::Scenario(format!(
                "stream {:?}: worker {worker} but plugin.workers is {}",
                step.name,
                chain.others.len() + 1
            )));
        }
        if worker > 0 {
            std::mem::swap(&mut chain.down, &mut chain.others[worker - 1]);
        }
        let result = run_stream(&mut chain, s, step);
        if worker > 0 {
            std::mem::swap(&mut chain.down, &mut chain.others[worker - 1]);
        }
        obs.streams.push(result?);
    }
    Ok(obs)
}

fn setup_of(obs: &Observed) -> Setup {
    obs.setup.clone().unwrap_or_default()
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Sends a response (headers with :status, body) through one VM's
/// response path the way Envoy's HTTP/1 codec delivers it.
fn respond_through(
    vm: &mut Vm,
    id: crate::StreamId,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), crate::Error> {
    vm.response_headers(id, &refs(headers), body.is_empty())?;
    if !body.is_empty() {
        vm.response_body(id, body, false)?;
        vm.response_body(id, &[], true)?;
    }
    Ok(())
}

fn set_connected(vm: &mut Vm, id: crate::StreamId) -> Result<(), crate::Error> {
    vm.set_stream_property(id, "upstream.address", "127.0.0.1:443")?;
    vm.set_stream_property(id, "upstream.local_address", "127.0.0.1:40000")?;
    vm.set_stream_property(id, "upstream.tls_version", "TLSv1.3")?;
    // tests/support/pki.py gives the service certificate DNS:localhost first.
    vm.set_stream_property(id, "upstream.dns_san_peer_certificate", "localhost")
}

/// What went back towards the client from one filter: headers and body.
type Message = (Vec<(String, String)>, Vec<u8>);

fn message_of(f: &crate::Forwarded) -> Message {
    (f.headers.clone().unwrap_or_default(), f.body.clone())
}

/// The router's upstream filter: the request the listener filter let
/// through goes through it to the service, and the answer back.
/// Returns what the service received (None: nothing) and the answer.
fn upstream_leg(
    up: &mut Vm,
    request: &crate::Forwarded,
    pooled: bool,
    service_answer: &Message,
    problems: &mut Vec<String>,
) -> Result<(Option<crate::Forwarded>, Message), crate::Error> {
    let uid = up.open_stream()?;
    // A pooled connection is known when the upstream filter runs; a new
    // one appears a moment later (measured: 1-4 ms), while the filter waits.
    if pooled {
        set_connected(up, uid)?;
    }
    let headers = request.headers.clone().unwrap_or_default();
    up.request_headers(uid, &refs(&headers), request.body.is_empty())?;
    if !request.body.is_empty() {
        up.request_body(uid, &request.body, false)?;
        up.request_body(uid, &[], true)?;
    }
    if !pooled {
        set_connected(up, uid)?;
        up.advance(std::time::Duration::from_millis(2))?;
    }
    let view = up.stream(uid).ok_or(crate::Error::UnknownStream(uid))?;
    let sent = view.upstream().end.then(|| view.upstream().clone());
    let answer = if sent.is_some() {
        respond_through(up, uid, &service_answer.0, &service_answer.1)?;
        let view = up.stream(uid).ok_or(crate::Error::UnknownStream(uid))?;
        message_of(view.downstream())
    } else if view.downstream().headers.is_some() {
        // Refused by the upstream filter: its reply goes back instead.
        message_of(view.downstream())
    } else {
        problems
            .push("the upstream filter held the request and never resumed or refused it".into());
        (vec![(":status".into(), "504".into())], Vec::new())
    };
    if let Some(view) = up.stream(uid) {
        problems.extend(view.problems().iter().cloned());
    }
    up.finish(uid)?;
    Ok((sent, answer))
}

fn run_stream(
    chain: &mut Chain,
    s: &Scenario,
    step: &StreamSpec,
) -> Result<ObservedStream, crate::Error> {
    let first_log = chain.down.logs().len();
    let first_up_log = chain.up.as_ref().map_or(0, |u| u.logs().len());
    let req = &step.request;
    let body = req.body_bytes();
    let mut headers: Vec<(String, String)> = vec![
        (":authority".into(), req.host.clone()),
        (":path".into(), req.path.clone()),
        (":method".into(), req.method.to_ascii_uppercase()),
        (":scheme".into(), "https".into()),
    ];
    for (k, v) in &req.headers {
        headers.push((k.to_ascii_lowercase(), v.clone()));
    }
    if let Some(b) = &body {
        if !req
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-length"))
        {
            headers.push(("content-length".into(), b.len().to_string()));
        }
    }
    // Envoy's connection manager adds these before the filter chain runs.
    headers.push(("x-forwarded-proto".into(), "https".into()));

    let mut problems = Vec::new();
    let vm = &mut chain.down;
    let id = vm.open_stream()?;
    for (k, v) in &step.properties {
        vm.set_stream_property(id, k, v.clone())?;
    }
    let chunks: Vec<Vec<u8>> = match (&req.chunks, &body) {
        (Some(c), _) => c.iter().map(|c| c.as_bytes().to_vec()).collect(),
        (None, Some(b)) => vec![b.clone()],
        (None, None) => Vec::new(),
    };
    let mut outcome = vm
        .request_headers(id, &refs(&headers), chunks.is_empty())
        .map(|_| ());
    // Envoy's HTTP/1 codec (measured by the fidelity scenarios): body data
    // arrives with end_of_stream=false, then an empty chunk ends the stream.
    if !chunks.is_empty() {
        for c in chunks.iter().chain(std::iter::once(&Vec::new())) {
            if outcome.is_err() {
                break;
            }
            outcome = vm.request_body(id, c, c.is_empty()).map(|_| ());
        }
    }
    let mut service_got = None;
    let forwarded = vm
        .stream(id)
        .map(|v| v.upstream().clone())
        .filter(|f| f.end);
    if let (Ok(()), Some(forwarded)) = (&outcome, forwarded) {
        let resp = step
            .upstream
            .clone()
            .or_else(|| s.upstream.clone())
            .unwrap_or_default();
        let rbody = resp.body_bytes();
        let mut rh: Vec<(String, String)> = vec![(":status".into(), resp.status.to_string())];
        for (k, v) in &resp.headers {
            rh.push((k.to_ascii_lowercase(), v.clone()));
        }
        rh.push(("content-length".into(), rbody.len().to_string()));
        let service_answer = (rh, rbody);
        let pooled = std::mem::replace(&mut chain.pooled, true);
        let leg = match chain.up.as_mut() {
            Some(up) => upstream_leg(up, &forwarded, pooled, &service_answer, &mut problems),
            None => Ok((Some(forwarded), service_answer)),
        };
        let vm = &mut chain.down;
        outcome = match leg {
            Ok((sent, (rh, rbody))) => {
                service_got = sent;
                set_connected(vm, id).and_then(|_| respond_through(vm, id, &rh, &rbody))
            }
            Err(e) => Err(e),
        };
    }
    let vm = &mut chain.down;
    if outcome.is_ok() {
        outcome = vm.finish(id);
    }
    let mut trap = None;
    match outcome {
        Err(e @ (crate::Error::Trap { .. } | crate::Error::VmFailed)) => trap = Some(e.to_string()),
        Err(e) => problems.push(e.to_string()),
        Ok(()) => {}
    }
    let view = vm.stream(id).ok_or(crate::Error::UnknownStream(id))?;
    // A trap in proxy_on_context_create answers the stream without an error.
    trap = trap.or_else(|| view.trap().map(str::to_string));
    problems.extend(view.problems().iter().cloned());
    let st_up = view.upstream();
    if st_up.headers.is_some() && !st_up.end && view.local_reply().is_none() && !view.is_reset() {
        problems.push(
            "the filter paused the request and never resumed it: in Envoy it would hang until a timeout"
                .into(),
        );
    }
    let upstream = service_got.as_ref().and_then(|got| {
        let h = got.headers.as_ref()?;
        let method = got.header(":method").unwrap_or_default().to_string();
        let mut headers: Vec<(String, String)> = h
            .iter()
            .filter_map(|(k, v)| match k.as_str() {
                ":authority" => Some(("host".to_string(), v.clone())),
                k if k.starts_with(':') => None,
                _ => Some((k.clone(), v.clone())),
            })
            .collect();
        http1_request_framing(&method, &mut headers, got.body.is_empty());
        Some(ObservedUpstream {
            method,
            path: got.header(":path").unwrap_or_default().to_string(),
            headers,
            body: got.body_str(),
        })
    });
    if view.is_reset() {
        problems.push("the stream was reset".into());
    }
    let down = view.downstream();
    let mut logs: Vec<String> = vm.logs()[first_log..]
        .iter()
        .map(|l| l.message.clone())
        .collect();
    if let Some(up) = &chain.up {
        logs.extend(up.logs()[first_up_log..].iter().map(|l| l.message.clone()));
    }
    Ok(ObservedStream {
        name: step.name.clone(),
        status: view.status(),
        headers: down
            .headers
            .as_ref()
            .map(|h| {
                h.iter()
                    .filter(|(k, _)| !k.starts_with(':'))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
        body: down.body_str(),
        local_reply: upstream.is_none(),
        upstream,
        logs,
        problems,
        trap,
    })
}

/// What Envoy's HTTP/1 codec adds on the wire to the service: a request
/// without body, content-length or transfer-encoding gets `content-length: 0`
/// unless its method has no body by definition (RFC 7230 section 3.3.2).
/// A body without content-length goes chunked (transfer-encoding is not
/// compared, so it is not modelled).
fn http1_request_framing(method: &str, headers: &mut Vec<(String, String)>, empty: bool) {
    let framed = headers
        .iter()
        .any(|(k, _)| k == "content-length" || k == "transfer-encoding");
    let bodiless = matches!(method, "GET" | "HEAD" | "DELETE" | "TRACE" | "CONNECT");
    if empty && !framed && !bodiless {
        headers.push(("content-length".into(), "0".into()));
    }
}

/// One step's verdict.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub name: String,
    pub failures: Vec<String>,
}

/// Checks observations (from either side) against the scenario's expectations.
pub fn check(s: &Scenario, obs: &Observed) -> Vec<StepReport> {
    let mut reports = Vec::new();
    let mut startup = Vec::new();
    if let (Some(want), Some(got)) = (s.startup.configured, obs.configured) {
        if want != got {
            startup.push(format!("configured: expected {want}, got {got}"));
        }
    }
    check_logs(&s.startup.logs, &obs.startup_logs, &mut startup);
    reports.push(StepReport {
        name: "startup".into(),
        failures: startup,
    });
    for (i, step) in s.streams.iter().enumerate() {
        let mut f = Vec::new();
        match obs.streams.get(i) {
            None => f.push("no observation for this stream".into()),
            Some(o) => check_stream(&step.expect, o, obs.harness, &mut f),
        }
        reports.push(StepReport {
            name: step.name.clone(),
            failures: f,
        });
    }
    reports
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn check_stream(e: &Expect, o: &ObservedStream, harness: bool, f: &mut Vec<String>) {
    for p in &o.problems {
        f.push(format!("problem: {p}"));
    }
    match (e.trap.unwrap_or(false), &o.trap) {
        (false, Some(t)) => f.push(format!("the filter trapped: {t}")),
        (true, None) if harness => f.push("expected a trap, the filter did not trap".into()),
        _ => {}
    }
    if let Some(want) = e.status {
        if o.status != Some(want) {
            f.push(format!("status: expected {want}, got {:?}", o.status));
        }
    }
    check_headers(
        "response header",
        &e.headers,
        &e.absent_headers,
        &o.headers,
        f,
    );
    check_body("response body", &e.body, &e.json, &o.body, f);
    if let Some(want) = e.local_reply {
        if want != o.local_reply {
            f.push(format!(
                "local_reply: expected {want}, got {} (the service {} the request)",
                o.local_reply,
                if o.local_reply {
                    "never received"
                } else {
                    "received"
                }
            ));
        }
    }
    match (&e.upstream, &o.upstream) {
        (None, _) => {}
        (Some(UpstreamExpect::Nothing(_)), None) => {}
        (Some(UpstreamExpect::Nothing(_)), Some(u)) => f.push(format!(
            "upstream: expected nothing, the service received {} {}",
            u.method, u.path
        )),
        (Some(UpstreamExpect::Received(_)), None) => {
            f.push("upstream: expected a request, the service received nothing".into())
        }
        (Some(UpstreamExpect::Received(w)), Some(u)) => {
            if let Some(m) = &w.method {
                if !m.eq_ignore_ascii_case(&u.method) {
                    f.push(format!("upstream method: expected {m}, got {}", u.method));
                }
            }
            if let Some(p) = &w.path {
                if *p != u.path {
                    f.push(format!("upstream path: expected {p:?}, got {:?}", u.path));
                }
            }
            check_headers(
                "upstream header",
                &w.headers,
                &w.absent_headers,
                &u.headers,
                f,
            );
            check_body("upstream body", &w.body, &w.json, &u.body, f);
        }
    }
    check_logs(&e.logs, &o.logs, f);
}

fn check_headers(
    what: &str,
    want: &BTreeMap<String, String>,
    absent: &[String],
    got: &[(String, String)],
    f: &mut Vec<String>,
) {
    for (k, v) in want {
        match header(got, k) {
            Some(g) if g == v => {}
            g => f.push(format!("{what} {k}: expected {v:?}, got {g:?}")),
        }
    }
    for k in absent {
        if let Some(g) = header(got, k) {
            f.push(format!("{what} {k}: expected absent, got {g:?}"));
        }
    }
}

fn check_body(
    what: &str,
    body: &Option<String>,
    json: &Option<serde_json::Value>,
    got: &str,
    f: &mut Vec<String>,
) {
    if let Some(b) = body {
        if b != got {
            f.push(format!("{what}:\n  expected: {b:?}\n  got:      {got:?}"));
        }
    }
    if let Some(j) = json {
        match serde_json::from_str::<serde_json::Value>(got) {
            Ok(g) if g == *j => {}
            Ok(g) => f.push(format!("{what} (JSON):\n  expected: {j}\n  got:      {g}")),
            Err(_) => f.push(format!("{what}: expected JSON {j}, got non-JSON {got:?}")),
        }
    }
}

fn check_logs(e: &LogExpect, logs: &[String], f: &mut Vec<String>) {
    for c in &e.contains {
        if !logs.iter().any(|l| l.contains(c.as_str())) {
            f.push(format!("logs: no line contains {c:?}; lines: {logs:#?}"));
        }
    }
    for c in &e.not_contains {
        for l in logs.iter().filter(|l| l.contains(c.as_str())) {
            f.push(format!("logs: a line contains {c:?}: {l:?}"));
        }
    }
}

/// Human-readable report; returns true if every step passed.
pub fn render(s: &Scenario, reports: &[StepReport], out: &mut String) -> bool {
    let ok = reports.iter().all(|r| r.failures.is_empty());
    let _ = writeln!(out, "{} {}", if ok { "PASS" } else { "FAIL" }, s.name);
    for r in reports {
        if r.name == "startup" && r.failures.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "  {} {}",
            if r.failures.is_empty() {
                "ok  "
            } else {
                "FAIL"
            },
            r.name
        );
        for line in &r.failures {
            for (i, l) in line.lines().enumerate() {
                let _ = writeln!(out, "{}{l}", if i == 0 { "       - " } else { "         " });
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(yaml: &str) -> PluginSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn dpp_guard_names_only_for_dpp_guard() {
        let dpp = plugin("config: {version: 1}").setup();
        assert_eq!(
            (dpp.root_id.as_str(), dpp.vm_id.as_str()),
            (wire::ROOT_ID, wire::VM_ID)
        );
        assert_eq!(
            dpp.upstream_root_id.as_deref(),
            Some(wire::UPSTREAM_GUARD_ROOT_ID)
        );

        let other = plugin("wasm: other.wasm").setup();
        assert_eq!(other.module, Some(PathBuf::from("other.wasm")));
        assert_eq!((other.root_id.as_str(), other.vm_id.as_str()), ("", ""));
        assert_eq!(other.upstream_root_id, None);

        let named = plugin("{wasm: other.wasm, root_id: r, vm_id: v}").setup();
        assert_eq!((named.root_id.as_str(), named.vm_id.as_str()), ("r", "v"));
        let alone = plugin("upstream_filter: false").setup();
        assert_eq!(alone.upstream_root_id, None);
    }

    #[test]
    fn the_module_is_found_beside_the_scenario() {
        let dir = std::env::temp_dir().join(format!("scenario-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.yaml");
        std::fs::write(&file, "name: n\nplugin: {wasm: ../m/x.wasm}\nstreams: []\n").unwrap();
        let s = load(&file).unwrap();
        assert_eq!(s.plugin.wasm, Some(dir.join("../m/x.wasm")));
        std::fs::remove_dir_all(&dir).ok();
    }
}
