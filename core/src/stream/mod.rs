//! The decision core of one HTTP stream, without I/O.
//!
//! A [`Guard`] is built once per worker from the compiled policy (and the
//! keyring); it opens one [`Exchange`] per stream. The host adapter (the
//! plugin, or a test) calls the exchange once per phase:
//!
//! | phase | method | reads |
//! |---|---|---|
//! | request headers | [`Exchange::on_request_headers`] | request headers, `xds.route_name` if a route matches on it, `connection.tls_version` on protected routes; on routes with `access` or `reveal_to`: the principal's facts (certificate SAN/subject, JWT claims in dynamic metadata, the trusted header), the client address, lockout deadlines in shared data |
//! | request body chunk | [`Exchange::on_request_body`] | the buffered body, once complete, on routes with request field rules |
//! | request trailers | [`Exchange::on_request_trailers`] | as above |
//! | response headers | [`Exchange::on_response_headers`] | the hold marker; the body headers on routes with response field rules; `:status` on routes with `access.lockout` (the service's 401/403 count) |
//! | response body chunk / trailers | [`Exchange::on_response_body`], [`Exchange::on_response_trailers`] | as for requests |
//! | log | [`Exchange::on_log`] | upstream facts for the plaintext watch; the access record's facts |
//!
//! Each returns one [`Effects`] value: header edits, continue or pause, a
//! body replacement, a local reply with its security event, counters, the
//! access record. Every policy decision about a stream lives here: route
//! match ([`crate::Policy::decide_request`]), downstream TLS, the
//! `accept-encoding` removal, body size limits, hold marking, the field
//! rewrite ([`crate::protect`]), the plaintext watch and the access
//! record's content. A fact the host cannot deliver ([`HostFault`]) is a
//! refusal with a `host_call_failed` event, never a pass.

mod body;
mod effects;
mod exchange;
mod facts;
mod guard;
pub mod shared;

pub use effects::{BodyReplacement, Effects, Flow, HeaderEdit};
pub use exchange::{host_fault_reply, Exchange, Phase, Subject, SubjectKind};
pub use facts::{BodyView, HeaderView, HostFault, Property, PropertySource};
pub use guard::{Guard, MatchReads, UNPROTECTED_WATCH_PERIOD};
pub use shared::SharedStore;

#[cfg(test)]
mod tests;
