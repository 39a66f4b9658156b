//! A wasmtime host that runs proxy-wasm filters as Envoy 1.40 does, for
//! tests. See README.md for the API and the scenario format.
//!
//! - [`Plugin`]: a compiled module; [`Vm`]: one running VM (one worker);
//!   [`Node`]: what VMs of one Envoy share (shared data, metrics, queues).
//! - [`scenario`]: YAML scenario files, run here and against a real Envoy.
//!
//! Nothing is global: every test builds its own `Node` and `Vm`s.

// The README's examples are compiled as doctests so they cannot drift.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod abi;
mod config;
mod headers;
#[macro_use]
mod hostcalls;
mod imports;
mod node;
mod properties;
pub mod scenario;
mod state;
mod vm;

pub use abi::{Action, LogLevel, MetricKind};
pub use config::{HttpCallScript, VmConfig};
pub use headers::Headers;
pub use hostcalls::{Fault, ALLOCATE};
pub use node::{Metric, Node};
pub use properties::{Properties, Value};
pub use state::{Forwarded, HttpCall, LocalReply, LogEntry};
pub use vm::{Error, Plugin, StreamId, StreamView, Vm};
