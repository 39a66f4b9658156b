//! What the VMs of one Envoy process share: shared data (per vm_id),
//! metrics (per name) and shared queues. One `Node` is one simulated Envoy;
//! nothing here is global, so tests run in parallel.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::abi::{status, MetricKind};

/// A simulated Envoy process. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct Node {
    inner: Arc<Mutex<NodeState>>,
}

#[derive(Default)]
struct NodeState {
    /// vm_id -> key -> (value, cas)
    shared: HashMap<String, BTreeMap<String, (Vec<u8>, u32)>>,
    /// Like the C++ host: one CAS counter for the process, never 0.
    next_cas: u32,
    metrics: BTreeMap<String, Metric>,
    queues: Vec<Queue>,
    /// (vm, context, queue) notifications not yet delivered.
    ready: Vec<(u64, u32, u32)>,
    next_vm: u64,
}

struct Queue {
    vm_id: String,
    name: String,
    owner_vm: u64,
    owner_context: u32,
    items: VecDeque<Vec<u8>>,
}

/// A metric's current value, as Envoy's stats would show it.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Counter(u64),
    Gauge(i64),
    /// Every recorded value, in order.
    Histogram(Vec<u64>),
}

impl Metric {
    fn kind(&self) -> MetricKind {
        match self {
            Metric::Counter(_) => MetricKind::Counter,
            Metric::Gauge(_) => MetricKind::Gauge,
            Metric::Histogram(_) => MetricKind::Histogram,
        }
    }
}

impl Node {
    pub fn new() -> Node {
        Node::default()
    }

    fn lock(&self) -> MutexGuard<'_, NodeState> {
        // A panicking test thread must not poison the node for the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register_vm(&self) -> u64 {
        let mut s = self.lock();
        s.next_vm += 1;
        s.next_vm
    }

    /// The value and CAS of a shared-data key of `vm_id`.
    pub fn shared_data(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().shared.get(vm_id)?.get(key).cloned()
    }

    /// Sets a shared-data key as a module would, with the C++ host's CAS rules.
    /// Returns the proxy-wasm status.
    pub fn set_shared_data(&self, vm_id: &str, key: &str, value: &[u8], cas: u32) -> i32 {
        let mut s = self.lock();
        s.next_cas = s.next_cas.wrapping_add(1).max(1);
        let next = s.next_cas;
        let map = s.shared.entry(vm_id.to_string()).or_default();
        match map.get_mut(key) {
            // cas == 0 means "set unconditionally"; a stale cas is refused.
            Some(entry) if cas != 0 && cas != entry.1 => status::CAS_MISMATCH,
            Some(entry) => {
                *entry = (value.to_vec(), next);
                status::OK
            }
            None => {
                map.insert(key.to_string(), (value.to_vec(), next));
                status::OK
            }
        }
    }

    /// A metric by the name the module defined (`NAME`) or as Envoy's /stats
    /// shows it (`wasmcustom.NAME`).
    pub fn metric(&self, name: &str) -> Option<Metric> {
        let name = name.strip_prefix("wasmcustom.").unwrap_or(name);
        self.lock().metrics.get(name).cloned()
    }

    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.metric(name)? {
            Metric::Counter(v) => Some(v),
            _ => None,
        }
    }

    pub fn gauge(&self, name: &str) -> Option<i64> {
        match self.metric(name)? {
            Metric::Gauge(v) => Some(v),
            _ => None,
        }
    }

    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        match self.metric(name)? {
            Metric::Histogram(v) => Some(v),
            _ => None,
        }
    }

    /// All metrics, by name.
    pub fn metrics(&self) -> BTreeMap<String, Metric> {
        self.lock().metrics.clone()
    }

    /// Every plugin that defines the same name shares the one stat (as in Envoy).
    /// A name already defined with another type is refused.
    pub(crate) fn define_metric(&self, kind: MetricKind, name: &str) -> bool {
        let mut s = self.lock();
        match s.metrics.get(name) {
            Some(m) => m.kind() == kind,
            None => {
                let m = match kind {
                    MetricKind::Counter => Metric::Counter(0),
                    MetricKind::Gauge => Metric::Gauge(0),
                    MetricKind::Histogram => Metric::Histogram(Vec::new()),
                };
                s.metrics.insert(name.to_string(), m);
                true
            }
        }
    }

    /// Envoy's incrementMetric: counters only go up, histograms refuse.
    pub(crate) fn increment_metric(&self, name: &str, offset: i64) -> i32 {
        let mut s = self.lock();
        match s.metrics.get_mut(name) {
            Some(Metric::Counter(v)) if offset > 0 => {
                *v = v.saturating_add(offset as u64);
                status::OK
            }
            Some(Metric::Counter(_)) => status::BAD_ARGUMENT,
            Some(Metric::Gauge(v)) => {
                *v = v.saturating_add(offset);
                status::OK
            }
            Some(Metric::Histogram(_)) => status::BAD_ARGUMENT,
            None => status::NOT_FOUND,
        }
    }

    /// Envoy's recordMetric: counter add, gauge set, histogram record.
    pub(crate) fn record_metric(&self, name: &str, value: u64) -> i32 {
        let mut s = self.lock();
        match s.metrics.get_mut(name) {
            Some(Metric::Counter(v)) => *v = v.saturating_add(value),
            Some(Metric::Gauge(v)) => *v = value as i64,
            Some(Metric::Histogram(h)) => h.push(value),
            None => return status::NOT_FOUND,
        }
        status::OK
    }

    /// Envoy's getMetric: histograms cannot be read back.
    pub(crate) fn get_metric(&self, name: &str) -> Result<u64, i32> {
        match self.lock().metrics.get(name) {
            Some(Metric::Counter(v)) => Ok(*v),
            Some(Metric::Gauge(v)) => Ok(*v as u64),
            Some(Metric::Histogram(_)) => Err(status::BAD_ARGUMENT),
            None => Err(status::NOT_FOUND),
        }
    }

    pub(crate) fn register_queue(&self, vm_id: &str, name: &str, vm: u64, context: u32) -> u32 {
        let mut s = self.lock();
        if let Some(i) = s
            .queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
        {
            let q = &mut s.queues[i];
            q.owner_vm = vm;
            q.owner_context = context;
            return i as u32 + 1;
        }
        s.queues.push(Queue {
            vm_id: vm_id.to_string(),
            name: name.to_string(),
            owner_vm: vm,
            owner_context: context,
            items: VecDeque::new(),
        });
        s.queues.len() as u32
    }

    pub(crate) fn resolve_queue(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.lock()
            .queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
            .map(|i| i as u32 + 1)
    }

    /// Returns the owner (vm, context) to notify.
    pub(crate) fn enqueue(&self, id: u32, item: &[u8]) -> Result<(u64, u32), i32> {
        let mut s = self.lock();
        let q = s
            .queues
            .get_mut((id as usize).wrapping_sub(1))
            .ok_or(status::NOT_FOUND)?;
        q.items.push_back(item.to_vec());
        let owner = (q.owner_vm, q.owner_context);
        s.ready.push((owner.0, owner.1, id));
        Ok(owner)
    }

    /// Queue-ready notifications for one VM, oldest first.
    pub(crate) fn take_ready(&self, vm: u64) -> Vec<(u32, u32)> {
        let mut s = self.lock();
        let (mine, rest): (Vec<_>, Vec<_>) = s.ready.drain(..).partition(|r| r.0 == vm);
        s.ready = rest;
        mine.into_iter().map(|(_, c, q)| (c, q)).collect()
    }

    pub(crate) fn dequeue(&self, id: u32) -> Result<Vec<u8>, i32> {
        let mut s = self.lock();
        let q = s
            .queues
            .get_mut((id as usize).wrapping_sub(1))
            .ok_or(status::NOT_FOUND)?;
        q.items.pop_front().ok_or(status::EMPTY)
    }
}
