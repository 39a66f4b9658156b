//! dpp-guard-core: everything dpp-guard decides, with no proxy-wasm types.
//!
//! The data flow is the one the filter follows for every request:
//! request facts in ([`RequestFacts`]) -> policy decision ([`Policy::decide_request`])
//! -> rewrite (response headers, later bodies) -> log ([`SecurityEvent`]).
//! Everything here is tested natively; the plugin crate only moves bytes
//! between Envoy and these functions.

// Never panic outside tests: errors are values (workspace lints in Cargo.toml).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod access;
pub mod access_control;
pub mod crypto;
pub mod decision;
pub mod events;
pub mod json;
pub mod kdf;
pub mod logkey;
pub mod monitor;
pub mod path;
pub mod policy;
pub mod protect;
pub mod scrub;
pub mod stream;
pub mod transport;
pub mod wire;

pub use access::{AccessRecord, Actions, RequestLogFacts, TlsFacts};
pub use decision::{
    LocalReply, RequestDecision, RequestFacts, RequestHeaderEdits, ResponseHeaderEdits,
};
pub use events::{EventKind, SecurityEvent, Severity};
pub use logkey::{CanaryKey, LogKey, LogKeyError, Pseudonymizer};
pub use policy::{Policy, PolicyError};
pub use scrub::Scrubber;
