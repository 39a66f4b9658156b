//! Host-call accounting and fault injection.
//!
//! Every proxy-wasm host function asks [`intercept`] first (one line at the
//! top of each). That does two things a test needs and Envoy cannot give on
//! demand:
//! - **counts** each call by name, and each allocation callback into the
//!   module (`proxy_on_memory_allocate`) the host makes to return data: the
//!   crossings a filter pays per request, deterministically;
//! - **injects faults**: a [`Fault`] makes a named host call fail with a
//!   chosen status (a header map Envoy no longer holds answers
//!   BAD_ARGUMENT, a body it cannot hand over NOT_FOUND), on one stream or
//!   any, so a test shows what the filter does then: a refusal with an
//!   event, never a trap or a pass.

use std::collections::BTreeMap;

use crate::state::HostState;

/// Name under which allocation callbacks are counted.
pub const ALLOCATE: &str = "proxy_on_memory_allocate";

/// A host call made to fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The host function, e.g. `proxy_get_header_map_value`.
    pub call: String,
    /// The status it returns instead of doing its work.
    pub status: i32,
    /// Only while this stream is the effective context (`None`: any).
    pub stream: Option<u32>,
    /// Let this many matching calls through first.
    pub skip: u32,
    /// Fail this many matching calls, then behave again (`None`: always).
    pub times: Option<u32>,
}

impl Fault {
    /// `call` fails with `status` on every call, on any context.
    pub fn new(call: &str, status: i32) -> Fault {
        Fault {
            call: call.to_string(),
            status,
            stream: None,
            skip: 0,
            times: None,
        }
    }

    /// Only on stream `id`.
    pub fn on_stream(mut self, id: u32) -> Fault {
        self.stream = Some(id);
        self
    }

    /// After `n` matching calls succeeded.
    pub fn after(mut self, n: u32) -> Fault {
        self.skip = n;
        self
    }

    /// For `n` matching calls only.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }
}

/// Per VM: call counts and armed faults.
#[derive(Debug, Default)]
pub(crate) struct HostCalls {
    counts: BTreeMap<&'static str, u64>,
    faults: Vec<Fault>,
}

impl HostCalls {
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }

    pub fn reset_counts(&mut self) {
        self.counts.clear();
    }

    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    pub fn count(&mut self, name: &'static str) {
        *self.counts.entry(name).or_default() += 1;
    }

    /// The status an armed fault gives this call, if one applies.
    fn fault(&mut self, name: &str, context: u32) -> Option<i32> {
        let f = self.faults.iter_mut().find(|f| {
            f.call == name && f.stream.is_none_or(|s| s == context) && f.times != Some(0)
        })?;
        if f.skip > 0 {
            f.skip -= 1;
            return None;
        }
        if let Some(n) = &mut f.times {
            *n -= 1;
        }
        Some(f.status)
    }
}

/// The one line at the top of every host function: counts the call and,
/// when a fault applies, returns its status instead of running the call.
macro_rules! intercept {
    ($caller:expr, $name:expr) => {
        if let Some(status) = $crate::hostcalls::intercept($caller.data_mut(), $name) {
            return Ok(status);
        }
    };
}

/// Counts the call; `Some(status)` when a fault makes it fail instead.
pub(crate) fn intercept(state: &mut HostState, name: &'static str) -> Option<i32> {
    let context = state.effective_context;
    let calls = &mut state.host_calls;
    calls.count(name);
    calls.fault(name, context)
}

/// Counts one allocation callback into the module.
pub(crate) fn allocated(state: &mut HostState) {
    state.host_calls.count(ALLOCATE);
}
