//! The access record: one JSON object per request, built at log time from
//! facts the plugin gathered, every request-derived value scrubbed.
//!
//! The plugin publishes it as Envoy filter state (`wasm.dpp_access_log`),
//! so any Envoy access logger can print it with
//! `%FILTER_STATE(wasm.dpp_access_log:PLAIN)%`, and optionally as a plugin
//! log line prefixed `dpp_access `. [`chain`] seals records into a
//! per-worker MAC chain that `dpp-guard verify-log` checks.

pub mod chain;
mod time;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::events::{known_method, EventKind};
use crate::scrub::HeaderOutcome;
use crate::scrub::Scrubber;
pub use time::rfc3339_utc;

/// What the filter did to one request. Every feature fills its part during
/// the stream (encryption counts fields, refusals add their code); the
/// record copies it at log time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Actions {
    pub fields_encrypted: u32,
    /// Fields opened for the caller (decrypt rules; with `reveal_to`, the
    /// caller holds a listed role).
    pub fields_decrypted: u32,
    /// Fields a decrypt rule's `reveal_to` kept sealed for this caller.
    pub fields_kept: u32,
    /// Fields a decrypt rule's `reveal_to` redacted for this caller.
    pub fields_redacted: u32,
    /// Codes of local replies the filter sent instead of forwarding
    /// (`route_disabled`, ...), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<&'static str>,
    /// Security events raised for this request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventKind>,
    /// Codes of replies a control in report mode would have sent; the
    /// request passed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub report_only: Vec<&'static str>,
}

impl Actions {
    pub fn refused(&mut self, code: &'static str) {
        self.refusals.push(code);
    }

    pub fn reported(&mut self, code: &'static str) {
        self.report_only.push(code);
    }

    pub fn raised(&mut self, kind: EventKind) {
        self.events.push(kind);
    }
}

/// TLS facts of both hops (versions as Envoy reports them, e.g. `TLSv1.3`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TlsFacts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downstream: Option<String>,
    pub downstream_mtls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// Raw facts about a request, as the plugin read them from Envoy. Nothing
/// here is logged as is: [`AccessRecord::build`] scrubs it.
#[derive(Debug, Clone, Default)]
pub struct RequestLogFacts {
    pub time_unix_nanos: u64,
    pub request_id: Option<String>,
    pub method: String,
    /// `:path` with its query string.
    pub path: String,
    pub status: Option<u64>,
    pub code_details: Option<String>,
    pub route_name: Option<String>,
    pub policy_route: Option<String>,
    pub upstream_cluster: Option<String>,
    pub duration_nanos: Option<u64>,
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
    pub tls: TlsFacts,
    /// `source.address` (`ip:port`).
    pub client_address: Option<String>,
    /// mTLS subject or the configured principal header.
    pub principal: Option<String>,
    /// Request headers the policy asked to log (name lower-case, raw value).
    pub headers: Vec<(String, String)>,
}

/// One request's record. Field order is the JSON order; `dpp_access` comes
/// first so tools find records by the prefix `{"dpp_access":`.
#[derive(Debug, Clone, Serialize)]
pub struct AccessRecord {
    /// Record format version.
    pub dpp_access: u32,
    /// Random id of the worker (plugin instance) whose chain this is.
    pub worker: String,
    /// Position in the worker's chain, from 0.
    pub seq: u64,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub method: &'static str,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_details: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<u64>,
    pub tls: TlsFacts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub actions: Actions,
    /// MAC of the previous record in this worker's chain (absent without a
    /// log key). The record's own MAC is appended when sealing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

impl AccessRecord {
    pub const VERSION: u32 = 1;

    /// Builds the record from raw facts; every request-derived string goes
    /// through the scrubber. `worker`, `seq` and `prev` are set by the chain.
    pub fn build(facts: &RequestLogFacts, actions: &Actions, scrubber: &Scrubber) -> AccessRecord {
        let text = |v: &Option<String>| v.as_deref().map(|s| scrubber.text(s));
        let headers = facts
            .headers
            .iter()
            .filter_map(|(name, value)| match scrubber.header(name, value) {
                HeaderOutcome::Drop => None,
                HeaderOutcome::Value(v) => Some((name.to_ascii_lowercase(), v)),
            })
            .collect();
        AccessRecord {
            dpp_access: Self::VERSION,
            worker: String::new(),
            seq: 0,
            time: rfc3339_utc(facts.time_unix_nanos),
            request_id: facts
                .request_id
                .as_deref()
                .map(|id| scrubber.request_id(id)),
            method: known_method(&facts.method),
            path: scrubber.url(&facts.path),
            status: facts.status,
            code_details: text(&facts.code_details),
            // Route and cluster names come from the operator's configuration,
            // but are scrubbed too: a name is free text.
            route: text(&facts.route_name),
            policy_route: text(&facts.policy_route),
            upstream_cluster: text(&facts.upstream_cluster),
            duration_us: facts.duration_nanos.map(|n| n / 1000),
            request_bytes: facts.request_bytes,
            response_bytes: facts.response_bytes,
            tls: facts.tls.clone(),
            client: facts
                .client_address
                .as_deref()
                .map(|a| scrubber.client_address(a)),
            principal: facts.principal.as_deref().map(|p| scrubber.principal(p)),
            headers,
            actions: actions.clone(),
            prev: None,
        }
    }
}

#[cfg(test)]
mod tests;
