//! A compiled plugin ([`Plugin`]) and one running VM of it ([`Vm`], one
//! Envoy worker) with the HTTP stream life cycle Envoy drives.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use wasmtime::{Config, Engine, Instance, InstancePre, Linker, Module, Store, Val};

use crate::abi::{stream as which, Action, LogLevel};
use crate::config::{HttpCallScript, VmConfig};
use crate::headers::{header_value, lower, Headers};
use crate::imports;
use crate::node::Node;
use crate::properties::Value;
use crate::state::{
    CallResponse, Deferred, Forwarded, HostState, HttpCall, LocalReply, LogEntry, Side, StreamState,
};

/// A proxy-wasm module compiled once; start any number of [`Vm`]s from it.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    engine: Engine,
    pre: InstancePre<HostState>,
    allocator: &'static str,
    abi: &'static str,
    init: Option<&'static str>,
}

impl Plugin {
    /// Compiles a `.wasm` file (wasm32-wasip1 or wasm32-unknown-unknown).
    pub fn load(path: impl AsRef<Path>) -> Result<Plugin, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Load(format!("cannot read {}: {e}", path.display())))?;
        Plugin::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Plugin, Error> {
        Plugin::compile(bytes).map_err(|e| Error::Load(format!("{e:#}")))
    }

    fn compile(bytes: &[u8]) -> wasmtime::Result<Plugin> {
        let mut config = Config::new();
        // Fuel bounds every call, so a looping module fails instead of hanging
        // the test; it is deterministic, unlike a wall-clock timeout.
        config.consume_fuel(true);
        let engine = Engine::new(&config)?;
        let module = Module::new(&engine, bytes)?;
        let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
        let has = |n: &str| exports.iter().any(|e| e == n);
        let abi = if has("proxy_abi_version_0_2_1") {
            "0.2.1"
        } else if has("proxy_abi_version_0_2_0") {
            "0.2.0"
        } else {
            wasmtime::bail!("not a proxy-wasm 0.2.x module: no proxy_abi_version_0_2_0/1 export");
        };
        // The Rust SDK exports proxy_on_memory_allocate; other toolchains malloc.
        let allocator = if has("proxy_on_memory_allocate") {
            "proxy_on_memory_allocate"
        } else if has("malloc") {
            "malloc"
        } else {
            wasmtime::bail!("the module exports no allocator (proxy_on_memory_allocate or malloc)");
        };
        let init = if has("_initialize") {
            Some("_initialize")
        } else if has("_start") {
            Some("_start")
        } else {
            None
        };
        let mut linker = Linker::new(&engine);
        imports::link(&mut linker, &module)?;
        let pre = linker.instantiate_pre(&module)?;
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                engine,
                pre,
                allocator,
                abi,
                init,
            }),
        })
    }

    /// "0.2.0" or "0.2.1".
    pub fn abi_version(&self) -> &'static str {
        self.inner.abi
    }
}

/// Why a call into the module failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The module trapped (panic, unreachable, out of fuel, bad memory
    /// access...). Envoy answers the stream 503 and marks the VM failed.
    Trap {
        callback: String,
        message: String,
        backtrace: String,
    },
    /// An earlier trap failed this VM; Envoy no longer calls it.
    VmFailed,
    UnknownStream(u32),
    Instantiate(String),
    /// The file is not a loadable proxy-wasm module.
    Load(String),
    /// A scenario asks for something the run cannot do (a worker that
    /// does not exist).
    Scenario(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Trap {
                callback,
                message,
                backtrace,
            } => write!(f, "wasm trap in {callback}: {message}\n{backtrace}"),
            Error::VmFailed => write!(f, "the VM failed earlier (trap); Envoy stops calling it"),
            Error::UnknownStream(id) => write!(f, "no stream with id {id}"),
            Error::Scenario(m) => write!(f, "scenario: {m}"),
            Error::Instantiate(m) => write!(f, "cannot instantiate the module: {m}"),
            Error::Load(m) => write!(f, "cannot load the module: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Identifies a stream (its context id) on one [`Vm`].
pub type StreamId = u32;

/// One VM (one Envoy worker thread) running the plugin.
pub struct Vm {
    store: Store<HostState>,
    instance: Instance,
    plugin: Plugin,
    configured: bool,
    failure: Option<Error>,
    manual_calls: Vec<u32>,
}

const ROOT: u32 = 1;

impl Vm {
    /// Instantiates the module and runs what Envoy runs when it loads a
    /// plugin: `_initialize`, the root context, on_vm_start, on_configure.
    /// A start or configure that returns false leaves the VM unconfigured:
    /// every stream then gets Envoy's 500 (the filter is missing on the
    /// listener, fail closed). A trap is an error.
    pub fn start(plugin: &Plugin, node: &Node, config: VmConfig) -> Result<Vm, Error> {
        let config = Arc::new(config);
        let state = HostState::new(config.clone(), node.clone(), plugin.inner.allocator);
        let mut store = Store::new(&plugin.inner.engine, state);
        store
            .set_fuel(config.fuel_per_call)
            .map_err(|e| Error::Instantiate(e.to_string()))?;
        let instance = plugin
            .inner
            .pre
            .instantiate(&mut store)
            .map_err(|e| trap_error("instantiate", e))?;
        let mut vm = Vm {
            store,
            instance,
            plugin: plugin.clone(),
            configured: false,
            failure: None,
            manual_calls: Vec::new(),
        };
        if let Some(init) = plugin.inner.init {
            vm.invoke(0, init, &[])?;
        }
        vm.invoke(ROOT, "proxy_on_context_create", &[ROOT as i32, 0])?;
        let vm_config_len = config.vm_config.len() as i32;
        let started = vm
            .invoke(ROOT, "proxy_on_vm_start", &[ROOT as i32, vm_config_len])?
            .unwrap_or(1)
            != 0;
        if started {
            vm.store.data_mut().in_configure = true;
            let len = config.plugin_config.len() as i32;
            let res = vm.invoke(ROOT, "proxy_on_configure", &[ROOT as i32, len]);
            vm.store.data_mut().in_configure = false;
            vm.configured = res?.unwrap_or(1) != 0;
        }
        vm.settle()?;
        vm.pump()?;
        Ok(vm)
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// on_vm_start and on_configure both returned true.
    pub fn configured(&self) -> bool {
        self.configured
    }

    /// The trap that failed this VM, if any.
    pub fn failure(&self) -> Option<&Error> {
        self.failure.as_ref()
    }

    pub fn node(&self) -> &Node {
        &self.store.data().node
    }

    /// Every log line at or above the configured level, in order.
    pub fn logs(&self) -> &[LogEntry] {
        &self.store.data().logs
    }

    pub fn logs_at(&self, level: LogLevel) -> Vec<&str> {
        self.logs()
            .iter()
            .filter(|l| l.level == level)
            .map(|l| l.message.as_str())
            .collect()
    }

    /// True if any captured log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs().iter().any(|l| l.message.contains(needle))
    }

    /// Every http_call the module made, in order.
    pub fn http_calls(&self) -> &[HttpCall] {
        &self.store.data().http_calls
    }

    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    /// Makes a host call fail on purpose (see [`Fault`](crate::Fault)).
    pub fn inject_fault(&mut self, fault: crate::Fault) {
        self.store.data_mut().host_calls.inject(fault);
    }

    pub fn clear_faults(&mut self) {
        self.store.data_mut().host_calls.clear_faults();
    }

    /// Host calls the module made, by name, plus the allocation callbacks
    /// the host made into it (under [`ALLOCATE`](crate::ALLOCATE)), since
    /// the VM started or the last [`Vm::reset_host_calls`].
    pub fn host_calls(&self) -> &BTreeMap<&'static str, u64> {
        self.store.data().host_calls.counts()
    }

    pub fn reset_host_calls(&mut self) {
        self.store.data_mut().host_calls.reset_counts();
    }

    /// Virtual monotonic time since the VM started.
    pub fn now(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.store.data().now_ns)
    }

    fn invoke(&mut self, context: u32, name: &str, args: &[i32]) -> Result<Option<i32>, Error> {
        if self.failure.is_some() {
            return Err(Error::VmFailed);
        }
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let ty = func.ty(&self.store);
        if ty.params().len() != args.len() {
            return Err(Error::Instantiate(format!(
                "{name} takes {} parameters, the ABI passes {}",
                ty.params().len(),
                args.len()
            )));
        }
        let fuel = self.store.data().config.fuel_per_call;
        let s = self.store.data_mut();
        s.current_context = context;
        s.effective_context = context;
        self.store
            .set_fuel(fuel)
            .map_err(|e| Error::Instantiate(e.to_string()))?;
        let params: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
        let mut results = vec![Val::I32(0); ty.results().len()];
        match func.call(&mut self.store, &params, &mut results) {
            Ok(()) => Ok(results.first().and_then(Val::i32)),
            Err(e) => {
                let err = trap_error(name, e);
                self.fail(context, err.clone());
                Err(err)
            }
        }
    }

    /// Envoy on a trap: the VM is failed, the stream gets a 503 with an
    /// empty body (wasm_fail_stream) and the filter is not called again.
    fn fail(&mut self, context: u32, err: Error) {
        let message = err.to_string();
        let s = self.store.data_mut();
        s.deferred.clear();
        if let Some(st) = s.streams.get_mut(&context) {
            st.failed = true;
            st.trap = Some(message.clone());
            fail_stream(st, 503, "wasm_fail_stream");
        }
        s.logs.push(LogEntry {
            level: LogLevel::Critical,
            message,
        });
        self.failure = Some(err);
    }

    /// Applies what the module asked for during the last call(s).
    fn settle(&mut self) -> Result<(), Error> {
        for _ in 0..1000 {
            let actions = std::mem::take(&mut self.store.data_mut().deferred);
            if actions.is_empty() {
                return Ok(());
            }
            for a in actions {
                match a {
                    Deferred::LocalReply(id, reply) => self.apply_local_reply(id, reply)?,
                    Deferred::Continue(id, w) => self.apply_continue(id, w),
                    Deferred::Close(id) => {
                        if let Some(st) = self.store.data_mut().streams.get_mut(&id) {
                            st.reset = true;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn st(&mut self, id: StreamId) -> Result<&mut StreamState, Error> {
        self.store
            .data_mut()
            .streams
            .get_mut(&id)
            .ok_or(Error::UnknownStream(id))
    }

    fn apply_continue(&mut self, id: StreamId, w: i32) {
        let Some(st) = self.store.data_mut().streams.get_mut(&id) else {
            return;
        };
        if w == which::HTTP_REQUEST {
            // Envoy's continueStream also drops its request map pointers.
            st.request.headers_accessible = false;
            st.request.trailers_accessible = false;
            forward_all(st, true);
        } else {
            st.response.headers_accessible = false;
            st.response.trailers_accessible = false;
            forward_all(st, false);
        }
    }

    fn apply_local_reply(&mut self, id: StreamId, reply: LocalReply) -> Result<(), Error> {
        let Some(st) = self.store.data_mut().streams.get_mut(&id) else {
            return Ok(());
        };
        if st.local_reply.is_some() || st.reset || st.failed {
            return Ok(());
        }
        if st.downstream.headers.is_some() {
            // The client already has response headers: Envoy can only reset.
            st.reset = true;
            return Ok(());
        }
        let headers = local_reply_headers(&reply);
        let body = reply.body.clone();
        let response_phase = st.response.started;
        st.local_reply = Some(reply);
        if response_phase {
            // Sent while encoding: Envoy answers directly, without the filter chain.
            st.downstream = Forwarded {
                headers: Some(headers),
                body,
                trailers: None,
                end: true,
            };
            st.response.started = true;
            return Ok(());
        }
        // Sent while decoding: the reply runs through the filter's response
        // callbacks like an upstream response.
        let eos = body.is_empty();
        self.deliver_response_headers(id, headers, eos, true)?;
        if !eos {
            self.deliver_response_body(id, &body, true, true)?;
        }
        Ok(())
    }

    // ---- streams ---------------------------------------------------------

    /// Creates a stream context (proxy_on_context_create).
    ///
    /// A trap here (e.g. a Rust SDK module whose root context offers no
    /// HTTP context) is Envoy's as anywhere else, measured in Envoy 1.40
    /// with FAIL_CLOSED: the stream is answered 503 with an empty body
    /// (`wasm_fail_stream`), the VM is failed, and Envoy goes on answering
    /// later streams the same way. So the stream exists and its id is
    /// returned; [`StreamView::trap`] and [`Vm::failure`] carry the trap.
    pub fn open_stream(&mut self) -> Result<StreamId, Error> {
        let s = self.store.data_mut();
        let id = s.next_context;
        s.next_context += 1;
        let mut st = StreamState::default();
        st.properties.extend(&s.config.stream_properties);
        s.streams.insert(id, st);
        if self.configured && self.failure.is_none() {
            match self.invoke(id, "proxy_on_context_create", &[id as i32, ROOT as i32]) {
                Ok(_) | Err(Error::Trap { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(id)
    }

    /// Sets a property of one stream (e.g. `upstream.tls_version` once a
    /// response arrives, as Envoy would).
    pub fn set_stream_property(
        &mut self,
        id: StreamId,
        dotted: &str,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        self.st(id)?.properties.set(dotted, value);
        Ok(())
    }

    /// Stops the stream before the filter if the plugin is not usable.
    fn refuse_if_unusable(&mut self, id: StreamId) -> Result<bool, Error> {
        let configured = self.configured;
        let failed = self.failure.is_some();
        let st = self.st(id)?;
        if st.local_reply.is_some() || st.reset || st.failed {
            return Ok(true);
        }
        if !configured {
            // Measured: Envoy with a rejected ECDS Wasm config answers 500
            // with an empty body.
            fail_stream(st, 500, "filter_config_not_found");
            return Ok(true);
        }
        if failed {
            st.failed = true;
            fail_stream(st, 503, "wasm_fail_stream");
            return Ok(true);
        }
        Ok(false)
    }

    /// Delivers request headers (include `:method`, `:path`, `:authority`,
    /// `:scheme`). `end_of_stream` when the request has no body.
    pub fn request_headers(
        &mut self,
        id: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        if self.refuse_if_unusable(id)? {
            return Ok(Action::Pause);
        }
        let st = self.st(id)?;
        st.request.headers = lower(headers);
        st.request.started = true;
        st.request.headers_accessible = true;
        st.request.end_received = end_of_stream;
        let n = headers.len() as i32;
        let action = self
            .invoke(
                id,
                "proxy_on_request_headers",
                &[id as i32, n, end_of_stream as i32],
            )?
            .map_or(Action::Continue, Action::from_wasm);
        self.settle()?;
        let st = self.st(id)?;
        if action == Action::Continue && !ended(st) {
            st.request.headers_accessible = false;
            forward_all(st, true);
        }
        self.pump()?;
        Ok(action)
    }

    /// Delivers one request body chunk. While the filter pauses, chunks
    /// accumulate and each callback sees the whole buffered body.
    pub fn request_body(
        &mut self,
        id: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        self.body(id, chunk, end_of_stream, true)
    }

    pub fn request_trailers(
        &mut self,
        id: StreamId,
        trailers: &[(&str, &str)],
    ) -> Result<Action, Error> {
        self.trailers(id, trailers, true)
    }

    /// Delivers response headers (include `:status`).
    pub fn response_headers(
        &mut self,
        id: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        let st = self.st(id)?;
        if st.local_reply.is_some() || st.reset || st.failed {
            return Ok(Action::Continue);
        }
        let action = self.deliver_response_headers(id, lower(headers), end_of_stream, false)?;
        self.pump()?;
        Ok(action)
    }

    pub fn response_body(
        &mut self,
        id: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        self.body(id, chunk, end_of_stream, false)
    }

    pub fn response_trailers(
        &mut self,
        id: StreamId,
        trailers: &[(&str, &str)],
    ) -> Result<Action, Error> {
        self.trailers(id, trailers, false)
    }

    fn deliver_response_headers(
        &mut self,
        id: StreamId,
        headers: Headers,
        eos: bool,
        local: bool,
    ) -> Result<Action, Error> {
        let st = self.st(id)?;
        st.response = Side::default();
        st.response.headers = headers;
        st.response.started = true;
        st.response.headers_accessible = true;
        st.response.end_received = eos;
        let n = st.response.headers.len() as i32;
        let action = self
            .invoke(id, "proxy_on_response_headers", &[id as i32, n, eos as i32])?
            .map_or(Action::Continue, Action::from_wasm);
        if !local {
            self.settle()?;
        } else {
            // A second local reply from the reply's own callbacks is ignored.
            self.store
                .data_mut()
                .deferred
                .retain(|d| !matches!(d, Deferred::LocalReply(..)));
            self.settle()?;
        }
        let st = self.st(id)?;
        let ended_now = if local {
            st.reset || st.failed
        } else {
            ended(st)
        };
        if action == Action::Continue && !ended_now {
            st.response.headers_accessible = false;
            forward_all(st, false);
        }
        Ok(action)
    }

    fn deliver_response_body(
        &mut self,
        id: StreamId,
        chunk: &[u8],
        eos: bool,
        local: bool,
    ) -> Result<Action, Error> {
        self.body_inner(id, chunk, eos, false, local)
    }

    fn body(
        &mut self,
        id: StreamId,
        chunk: &[u8],
        eos: bool,
        request: bool,
    ) -> Result<Action, Error> {
        let st = self.st(id)?;
        if ended(st) {
            return Ok(Action::Continue);
        }
        let action = self.body_inner(id, chunk, eos, request, false)?;
        self.pump()?;
        Ok(action)
    }

    fn body_inner(
        &mut self,
        id: StreamId,
        chunk: &[u8],
        eos: bool,
        request: bool,
        local: bool,
    ) -> Result<Action, Error> {
        let limit = self.store.data().config.buffer_limit;
        let st = self.st(id)?;
        let side = if request {
            &mut st.request
        } else {
            &mut st.response
        };
        side.end_received = eos;
        side.body.extend_from_slice(chunk);
        if side.buffering && side.body.len() > limit {
            // Envoy's buffer overflow while a filter buffers.
            if request {
                self.store.data_mut().deferred.push(Deferred::LocalReply(
                    id,
                    LocalReply {
                        status: 413,
                        details: "request_payload_too_large".into(),
                        body: b"Payload Too Large".to_vec(),
                        headers: Vec::new(),
                        grpc_status: -1,
                    },
                ));
            } else {
                st.reset = true;
            }
            self.settle()?;
            return Ok(Action::Pause);
        }
        side.in_body_callback = true;
        let size = side.body.len() as i32;
        let callback = if request {
            "proxy_on_request_body"
        } else {
            "proxy_on_response_body"
        };
        let result = self.invoke(id, callback, &[id as i32, size, eos as i32]);
        if let Ok(st) = self.st(id) {
            let side = if request {
                &mut st.request
            } else {
                &mut st.response
            };
            side.in_body_callback = false;
        }
        let action = result?.map_or(Action::Continue, Action::from_wasm);
        if local {
            self.store
                .data_mut()
                .deferred
                .retain(|d| !matches!(d, Deferred::LocalReply(..)));
        }
        self.settle()?;
        let st = self.st(id)?;
        let stop = if local {
            st.reset || st.failed
        } else {
            ended(st)
        };
        if stop {
            return Ok(action);
        }
        let side = if request {
            &mut st.request
        } else {
            &mut st.response
        };
        match action {
            Action::Continue => {
                side.buffering = false;
                forward_all(st, request);
            }
            Action::Pause => side.buffering = true,
        }
        Ok(action)
    }

    fn trailers(
        &mut self,
        id: StreamId,
        trailers: &[(&str, &str)],
        request: bool,
    ) -> Result<Action, Error> {
        let st = self.st(id)?;
        if ended(st) {
            return Ok(Action::Continue);
        }
        let side = if request {
            &mut st.request
        } else {
            &mut st.response
        };
        side.trailers = lower(trailers);
        side.trailers_received = true;
        side.trailers_accessible = true;
        side.end_received = true;
        let callback = if request {
            "proxy_on_request_trailers"
        } else {
            "proxy_on_response_trailers"
        };
        let action = self
            .invoke(id, callback, &[id as i32, trailers.len() as i32])?
            .map_or(Action::Continue, Action::from_wasm);
        self.settle()?;
        let st = self.st(id)?;
        if action == Action::Continue && !ended(st) {
            let side = if request {
                &mut st.request
            } else {
                &mut st.response
            };
            side.trailers_accessible = false;
            forward_all(st, request);
        }
        self.pump()?;
        Ok(action)
    }

    /// Ends the stream as Envoy does: on_log (maps readable), on_done, on_delete.
    pub fn finish(&mut self, id: StreamId) -> Result<(), Error> {
        let st = self.st(id)?;
        if st.finished {
            return Ok(());
        }
        st.finished = true;
        if !self.configured || self.failure.is_some() {
            return Ok(());
        }
        self.st(id)?.in_log = true;
        let r = self.invoke(id, "proxy_on_log", &[id as i32]);
        if let Ok(st) = self.st(id) {
            st.in_log = false;
        }
        r?;
        self.invoke(id, "proxy_on_done", &[id as i32])?;
        self.invoke(id, "proxy_on_delete", &[id as i32])?;
        // Nothing can be sent on a finished stream.
        self.store.data_mut().deferred.clear();
        Ok(())
    }

    /// What the filter let through towards the upstream, the client, and
    /// its own replies.
    pub fn stream(&self, id: StreamId) -> Option<StreamView<'_>> {
        self.store
            .data()
            .streams
            .get(&id)
            .map(|st| StreamView { st })
    }

    // ---- asynchronous events --------------------------------------------

    /// Delivers scripted http_call responses and shared-queue notifications
    /// until nothing is pending.
    pub fn pump(&mut self) -> Result<(), Error> {
        for _ in 0..10_000 {
            if self.failure.is_some() {
                return Ok(());
            }
            let token = self.store.data_mut().pending_calls.pop_front();
            if let Some(token) = token {
                let s = self.store.data();
                let Some(call) = s.http_calls.iter().find(|c| c.token == token).cloned() else {
                    continue;
                };
                let script = s
                    .http_scripts
                    .get(&call.upstream)
                    .cloned()
                    .unwrap_or(HttpCallScript::Fail);
                if script == HttpCallScript::Manual {
                    self.manual_calls.push(token);
                    continue;
                }
                self.deliver_call_response(&call, &script)?;
                continue;
            }
            let key = self.store.data().vm_key;
            let ready = self.store.data().node.take_ready(key);
            if ready.is_empty() {
                return Ok(());
            }
            for (ctx, queue) in ready {
                self.invoke(ctx, "proxy_on_queue_ready", &[ctx as i32, queue as i32])?;
                self.settle()?;
            }
        }
        Ok(())
    }

    /// Answers an http_call made to a `Manual` upstream.
    pub fn respond_http_call(&mut self, token: u32, script: HttpCallScript) -> Result<(), Error> {
        let Some(pos) = self.manual_calls.iter().position(|t| *t == token) else {
            return Err(Error::UnknownStream(token));
        };
        self.manual_calls.remove(pos);
        let Some(call) = self.http_calls().iter().find(|c| c.token == token).cloned() else {
            return Err(Error::UnknownStream(token));
        };
        self.deliver_call_response(&call, &script)?;
        self.pump()
    }

    fn deliver_call_response(
        &mut self,
        call: &HttpCall,
        script: &HttpCallScript,
    ) -> Result<(), Error> {
        let ctx = call.context_id;
        let s = self.store.data_mut();
        if ctx != ROOT && s.streams.get(&ctx).is_none_or(|st| st.finished) {
            // Envoy cancels a destroyed context's callouts.
            return Ok(());
        }
        let response = CallResponse::from_script(script);
        s.status = if response.is_some() {
            (0, String::new())
        } else {
            (11, "reset".to_string()) // BrokenConnection
        };
        let (nh, nb, nt) = response.as_ref().map_or((0, 0, 0), |r| {
            (r.headers.len(), r.body.len(), r.trailers.len())
        });
        s.call_response = response;
        let r = self.invoke(
            ctx,
            "proxy_on_http_call_response",
            &[
                ctx as i32,
                call.token as i32,
                nh as i32,
                nb as i32,
                nt as i32,
            ],
        );
        let s = self.store.data_mut();
        s.call_response = None;
        s.status = (0, String::new());
        r?;
        self.settle()
    }

    /// Advances the virtual clock, firing on_tick at every period boundary.
    pub fn advance(&mut self, by: std::time::Duration) -> Result<(), Error> {
        let target = self
            .store
            .data()
            .now_ns
            .saturating_add(by.as_nanos() as u64);
        loop {
            let s = self.store.data_mut();
            if s.tick_period_ms == 0 || s.next_tick_ns > target {
                break;
            }
            s.now_ns = s.next_tick_ns;
            s.next_tick_ns = s
                .now_ns
                .saturating_add(u64::from(s.tick_period_ms) * 1_000_000);
            self.invoke(ROOT, "proxy_on_tick", &[ROOT as i32])?;
            self.settle()?;
            self.pump()?;
        }
        self.store.data_mut().now_ns = target;
        Ok(())
    }
}

/// Read-only view of one stream's final state.
pub struct StreamView<'a> {
    st: &'a StreamState,
}

impl StreamView<'_> {
    /// What reached the upstream (headers None: nothing did).
    pub fn upstream(&self) -> &Forwarded {
        &self.st.upstream
    }
    /// What reached the client.
    pub fn downstream(&self) -> &Forwarded {
        &self.st.downstream
    }
    /// The response status the client got, if any.
    pub fn status(&self) -> Option<u32> {
        self.st
            .downstream
            .header(":status")
            .and_then(|s| s.parse().ok())
    }
    pub fn local_reply(&self) -> Option<&LocalReply> {
        self.st.local_reply.as_ref()
    }
    pub fn is_reset(&self) -> bool {
        self.st.reset
    }
    /// The filter failed on this stream: it trapped here, or an earlier
    /// trap failed the VM (Envoy answers 503 either way).
    pub fn failed(&self) -> bool {
        self.st.failed
    }
    /// The trap, with its wasm backtrace, when it happened in one of this
    /// stream's callbacks (including proxy_on_context_create).
    pub fn trap(&self) -> Option<&str> {
        self.st.trap.as_deref()
    }
    /// Filter state written by set_property, keyed as Envoy names it (`wasm.NAME`).
    pub fn filter_state(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.st.filter_state
    }
    /// Behaviour that works here but breaks in Envoy (e.g. a stale content-length).
    pub fn problems(&self) -> &[String] {
        &self.st.problems
    }
    /// The request body is held by the filter (paused) and not yet forwarded.
    pub fn request_paused(&self) -> bool {
        !self.st.upstream.end && !ended(self.st)
    }
}

fn ended(st: &StreamState) -> bool {
    st.local_reply.is_some() || st.reset || st.failed
}

/// Envoy's local reply: the filter's headers added, content-length set,
/// text/plain when a body has no content-type.
fn local_reply_headers(reply: &LocalReply) -> Headers {
    let mut h: Headers = vec![(":status".into(), reply.status.to_string())];
    h.extend(reply.headers.iter().cloned());
    h.retain(|(k, _)| k != "content-length");
    h.push(("content-length".into(), reply.body.len().to_string()));
    if !reply.body.is_empty() && header_value(&h, "content-type").is_none() {
        h.push(("content-type".into(), "text/plain".into()));
    }
    h
}

/// A reply Envoy itself sends (failed or missing filter), no filter callbacks.
fn fail_stream(st: &mut StreamState, status: u32, details: &str) {
    if st.downstream.headers.is_some() {
        st.reset = true;
        return;
    }
    let reply = LocalReply {
        status,
        details: details.into(),
        body: Vec::new(),
        headers: Vec::new(),
        grpc_status: -1,
    };
    st.downstream = Forwarded {
        headers: Some(local_reply_headers(&reply)),
        body: Vec::new(),
        trailers: None,
        end: true,
    };
    st.local_reply = Some(reply);
}

/// Passes on everything held for one direction: headers, buffered body,
/// trailers, and the end of stream once it was received.
fn forward_all(st: &mut StreamState, request: bool) {
    let (side, out) = if request {
        (&mut st.request, &mut st.upstream)
    } else {
        (&mut st.response, &mut st.downstream)
    };
    if !side.started || out.end {
        return;
    }
    if !side.headers_forwarded {
        side.headers_forwarded = true;
        out.headers = Some(side.headers.clone());
    }
    side.buffering = false;
    out.body.append(&mut side.body);
    if side.trailers_received && !side.trailers_forwarded {
        side.trailers_forwarded = true;
        out.trailers = Some(side.trailers.clone());
    }
    if side.end_received {
        out.end = true;
        check_content_length(st, request);
    }
}

/// Envoy forwards content-length as the filter left it: if the body changed
/// size, the peer gets a broken message. Report it instead of hiding it.
fn check_content_length(st: &mut StreamState, request: bool) {
    let (out, what, callback) = if request {
        (&st.upstream, "request", "on_http_request_headers")
    } else {
        (&st.downstream, "response", "on_http_response_headers")
    };
    let Some(cl) = out.header("content-length") else {
        return;
    };
    let Ok(declared) = cl.trim().parse::<usize>() else {
        return;
    };
    if declared != out.body.len() {
        let msg = format!(
            "{what}: content-length {declared} was forwarded with a {}-byte body; \
             Envoy forwards the header unchanged, so remove content-length in {callback} \
             when the body may be rewritten",
            out.body.len()
        );
        st.problems.push(msg);
    }
}

fn trap_error(callback: &str, e: wasmtime::Error) -> Error {
    let backtrace = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|b| b.to_string())
        .unwrap_or_default();
    let message = match e.downcast_ref::<wasmtime::Trap>() {
        Some(t) => t.to_string(),
        None => format!("{:#}", e.root_cause()),
    };
    Error::Trap {
        callback: callback.to_string(),
        message,
        backtrace,
    }
}
