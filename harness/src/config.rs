//! What Envoy's `vm_config` and plugin `configuration` give a VM, and how
//! `http_call` upstreams answer.

use std::collections::BTreeMap;

use crate::abi::LogLevel;
use crate::headers::Headers;
use crate::properties::{Properties, Value};

/// How an `http_call` to one upstream cluster is answered.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpCallScript {
    Respond {
        status: u32,
        headers: Headers,
        body: Vec<u8>,
        trailers: Headers,
    },
    /// The call fails (Envoy: reset / timeout): the callback gets no headers.
    Fail,
    /// The test answers with [`Vm::respond_http_call`].
    Manual,
}

impl HttpCallScript {
    pub fn respond(status: u32, body: impl Into<Vec<u8>>) -> HttpCallScript {
        HttpCallScript::Respond {
            status,
            headers: Vec::new(),
            body: body.into(),
            trailers: Vec::new(),
        }
    }
}

/// Everything Envoy's `vm_config` and plugin `configuration` would give.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub vm_id: String,
    pub plugin_name: String,
    pub root_id: String,
    /// `environment_variables` (host_env_keys / key_values) seen through WASI.
    pub env: Vec<(String, String)>,
    /// Plugin-wide properties (xds.*, node, ...).
    pub properties: Properties,
    /// Properties every new stream starts with (source.address, ...).
    pub stream_properties: Properties,
    pub log_level: LogLevel,
    /// Fuel (about one unit per wasm instruction) each callback may burn.
    pub fuel_per_call: u64,
    /// Wall clock at virtual time zero.
    pub start_unix_ns: u64,
    /// Clusters `http_call` may target and how each answers.
    pub http_upstreams: BTreeMap<String, HttpCallScript>,
    /// Envoy's per-stream buffer limit (per_connection_buffer_limit_bytes).
    pub buffer_limit: usize,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            vm_id: String::new(),
            plugin_name: "plugin".into(),
            root_id: String::new(),
            env: Vec::new(),
            properties: Properties::default(),
            stream_properties: default_stream_properties(),
            log_level: LogLevel::Trace,
            fuel_per_call: 2_000_000_000,
            // 2026-01-01T00:00:00Z: fixed, so runs are reproducible.
            start_unix_ns: 1_767_225_600_000_000_000,
            http_upstreams: BTreeMap::new(),
            buffer_limit: 1 << 20,
        }
    }
}

impl VmConfig {
    pub fn new() -> VmConfig {
        VmConfig::default()
    }
    pub fn plugin_config(mut self, c: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = c.into();
        self
    }
    pub fn vm_config(mut self, c: impl Into<Vec<u8>>) -> Self {
        self.vm_config = c.into();
        self
    }
    pub fn vm_id(mut self, id: &str) -> Self {
        self.vm_id = id.into();
        self
    }
    pub fn root_id(mut self, id: &str) -> Self {
        self.root_id = id.into();
        self
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    pub fn property(mut self, dotted: &str, value: impl Into<Value>) -> Self {
        self.properties.set(dotted, value);
        self
    }
    /// A property every new stream starts with (e.g. `connection.tls_version`).
    pub fn stream_property(mut self, dotted: &str, value: impl Into<Value>) -> Self {
        self.stream_properties.set(dotted, value);
        self
    }
    pub fn upstream(mut self, cluster: &str, script: HttpCallScript) -> Self {
        self.http_upstreams.insert(cluster.into(), script);
        self
    }
    pub fn fuel_per_call(mut self, fuel: u64) -> Self {
        self.fuel_per_call = fuel;
        self
    }
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }
}

/// Properties the harness sets on every stream unless the test overrides them.
pub(crate) fn default_stream_properties() -> Properties {
    let mut p = Properties::default();
    p.set("source.address", "127.0.0.1:50000")
        .set("destination.address", "127.0.0.1:10000")
        .set("connection.mtls", false);
    p
}
