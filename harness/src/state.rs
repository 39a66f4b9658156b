//! The host-side state of one VM (one Envoy worker): contexts, streams,
//! logs, pending asynchronous events. Owned by the wasmtime `Store`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::abi::LogLevel;
use crate::config::{HttpCallScript, VmConfig};
use crate::headers::{header_value, Headers};
use crate::node::Node;
use crate::properties::Properties;

/// One captured log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub level: LogLevel,
    pub message: String,
}

/// What passed a point of the chain: the upstream (request) or the client (response).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forwarded {
    /// None until the filter let the headers through.
    pub headers: Option<Headers>,
    pub body: Vec<u8>,
    pub trailers: Option<Headers>,
    /// The end of the stream went through.
    pub end: bool,
}

impl Forwarded {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref().and_then(|h| header_value(h, name))
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response the filter generated itself (proxy_send_local_response).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalReply {
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Headers,
    pub grpc_status: i32,
}

/// One direction of a stream as the filter sees it.
#[derive(Debug, Default)]
pub(crate) struct Side {
    pub headers: Headers,
    pub trailers: Headers,
    /// Envoy drops its pointer to the header map once the filter lets the
    /// headers go (Continue or continue_stream): later reads find nothing.
    pub headers_accessible: bool,
    pub trailers_accessible: bool,
    pub started: bool,
    pub headers_forwarded: bool,
    /// Body received but not yet passed on.
    pub body: Vec<u8>,
    /// The last body callback returned Pause: Envoy buffers (StopIterationAndBuffer).
    pub buffering: bool,
    /// A body callback is running: the chunk is readable.
    pub in_body_callback: bool,
    pub end_received: bool,
    pub trailers_received: bool,
    pub trailers_forwarded: bool,
}

#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub request: Side,
    pub response: Side,
    pub upstream: Forwarded,
    pub downstream: Forwarded,
    pub local_reply: Option<LocalReply>,
    pub reset: bool,
    pub properties: Properties,
    /// Envoy filter state written by set_property, keyed `wasm.NAME`.
    pub filter_state: BTreeMap<String, Vec<u8>>,
    /// Things that work in this harness but break in Envoy.
    pub problems: Vec<String>,
    pub in_log: bool,
    pub finished: bool,
    /// Set when the filter failed (trap): Envoy sends 503 and stops calling it.
    pub failed: bool,
}

/// Actions Envoy defers until the running VM call returns.
#[derive(Debug)]
pub(crate) enum Deferred {
    LocalReply(u32, LocalReply),
    Continue(u32, i32),
    Close(u32),
}

#[derive(Debug, Clone)]
pub struct HttpCall {
    pub token: u32,
    /// The context that made the call (a stream id or the root context id).
    pub context_id: u32,
    pub upstream: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub timeout_ms: u32,
}

pub(crate) struct CallResponse {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

impl CallResponse {
    /// What a scripted upstream answers; None when the call fails or the test answers it.
    pub fn from_script(script: &HttpCallScript) -> Option<CallResponse> {
        match script {
            HttpCallScript::Respond {
                status,
                headers,
                body,
                trailers,
            } => {
                let mut h = vec![(":status".to_string(), status.to_string())];
                h.extend(headers.iter().cloned());
                Some(CallResponse {
                    headers: h,
                    body: body.clone(),
                    trailers: trailers.clone(),
                })
            }
            HttpCallScript::Fail | HttpCallScript::Manual => None,
        }
    }
}

pub(crate) struct HostState {
    pub config: Arc<VmConfig>,
    pub node: Node,
    pub vm_key: u64,
    pub allocator: &'static str,
    pub root_context: u32,
    pub current_context: u32,
    pub effective_context: u32,
    pub next_context: u32,
    pub streams: HashMap<u32, StreamState>,
    pub logs: Vec<LogEntry>,
    pub stdio_partial: [Vec<u8>; 2],
    pub deferred: Vec<Deferred>,
    pub in_configure: bool,
    pub now_ns: u64,
    pub tick_period_ms: u32,
    pub next_tick_ns: u64,
    pub metric_ids: HashMap<u32, String>,
    pub next_metric_id: u32,
    pub http_calls: Vec<HttpCall>,
    pub pending_calls: VecDeque<u32>,
    pub http_scripts: BTreeMap<String, HttpCallScript>,
    pub next_token: u32,
    pub call_response: Option<CallResponse>,
    pub status: (u32, String),
    pub host_calls: crate::hostcalls::HostCalls,
}

impl HostState {
    pub fn new(config: Arc<VmConfig>, node: Node, allocator: &'static str) -> HostState {
        let vm_key = node.register_vm();
        HostState {
            http_scripts: config.http_upstreams.clone(),
            config,
            node,
            vm_key,
            allocator,
            root_context: 1,
            current_context: 0,
            effective_context: 0,
            next_context: 2,
            streams: HashMap::new(),
            logs: Vec::new(),
            stdio_partial: [Vec::new(), Vec::new()],
            deferred: Vec::new(),
            in_configure: false,
            now_ns: 0,
            tick_period_ms: 0,
            next_tick_ns: 0,
            metric_ids: HashMap::new(),
            next_metric_id: 0,
            http_calls: Vec::new(),
            pending_calls: VecDeque::new(),
            next_token: 0,
            call_response: None,
            status: (0, String::new()),
            host_calls: Default::default(),
        }
    }

    pub fn log(&mut self, level: LogLevel, message: String) {
        if level >= self.config.log_level {
            self.logs.push(LogEntry { level, message });
        }
    }

    pub fn stream(&mut self) -> Option<&mut StreamState> {
        let id = self.effective_context;
        self.streams.get_mut(&id)
    }

    pub fn realtime_ns(&self) -> u64 {
        self.config.start_unix_ns.saturating_add(self.now_ns)
    }
}
