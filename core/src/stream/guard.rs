//! The per-worker side of the decision core: the compiled policy, the
//! keyring, and what the policy lets a stream skip reading, computed once
//! when the policy is loaded.

use std::cell::Cell;
use std::rc::Rc;

use crate::crypto::Keyring;
use crate::monitor::Canaries;
use crate::policy::Policy;
use crate::scrub::Scrubber;

use super::Exchange;

/// On a request no route covers, the plaintext watch looks at the first
/// request of each worker and then at one request in this many.
///
/// Why sampled: the watch is defence in depth after the fact (the upstream
/// guard refuses plaintext before any byte leaves; `lint-envoy` refuses
/// configurations that bypass it). What it catches, a cluster whose
/// `http_filters` bypass the guard, is a property of the configuration, not
/// of one request: every request to that cluster shows it, so looking at a
/// sample finds it within a few dozen requests, while looking at every
/// request costs up to four property reads (eight VM crossings) on traffic
/// the policy does not protect. Protected routes are watched on every
/// request. docs/performance.md has the measurement.
pub const UNPROTECTED_WATCH_PERIOD: u32 = 64;

/// Which request facts route matching needs; the others are not read for a
/// request no route covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchReads {
    /// `:authority`: some route matches on `host`.
    pub host: bool,
    /// `:method`: some route matches on `methods`.
    pub method: bool,
    /// `xds.route_name`: some route matches on `route_name`.
    pub route_name: bool,
}

impl MatchReads {
    pub fn for_policy(policy: &Policy) -> MatchReads {
        let any = |f: &dyn Fn(&crate::policy::RouteMatch) -> bool| {
            policy.routes.iter().any(|r| f(&r.matcher))
        };
        MatchReads {
            host: any(&|m| m.host.is_some()),
            method: any(&|m| m.methods.is_some()),
            route_name: any(&|m| m.route_name.is_some()),
        }
    }
}

/// One worker's policy, keyring, scrubber and read plan; opens an
/// [`Exchange`] per stream.
#[derive(Debug)]
pub struct Guard {
    policy: Policy,
    keyring: Option<Keyring>,
    /// Everything request-derived that is logged (access records, request
    /// ids in events) goes through it.
    scrubber: Scrubber,
    reads: MatchReads,
    /// Unprotected requests seen by this worker, for the watch's sample.
    unprotected_seen: Cell<u32>,
    /// The policy's canaries under the log key's canary subkey.
    canaries: Option<Canaries>,
}

impl Guard {
    /// `keyring` must be the policy's keyring when any route has field
    /// rules (a body under rules without it is refused); `scrubber` is the
    /// policy's (`LoggingPolicy::scrubber`, with the log key if there is one).
    pub fn new(policy: Policy, keyring: Option<Keyring>, scrubber: Scrubber) -> Guard {
        let reads = MatchReads::for_policy(&policy);
        Guard {
            policy,
            keyring,
            scrubber,
            reads,
            unprotected_seen: Cell::new(0),
            canaries: None,
        }
    }

    /// Adds the canaries (built with the log key; see
    /// [`crate::monitor::require_log_key`]: a policy with canaries and no
    /// log key is refused at load).
    pub fn with_canaries(mut self, canaries: Option<Canaries>) -> Guard {
        self.canaries = canaries;
        self
    }

    pub fn canaries(&self) -> Option<&Canaries> {
        self.canaries.as_ref()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    pub fn match_reads(&self) -> MatchReads {
        self.reads
    }

    /// A new stream under this guard.
    pub fn open(self: &Rc<Self>) -> Exchange {
        Exchange::new(Rc::clone(self))
    }

    /// Whether the plaintext watch looks at this unprotected request.
    pub(super) fn sample_unprotected_watch(&self) -> bool {
        let n = self.unprotected_seen.get();
        self.unprotected_seen.set(n.wrapping_add(1));
        n.is_multiple_of(UNPROTECTED_WATCH_PERIOD)
    }
}
