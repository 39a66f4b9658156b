//! Counters the filters expose in Envoy's /stats (as `wasmcustom.NAME`) and
//! /stats/prometheus (dots become underscores).

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::host;

thread_local! {
    static IDS: RefCell<BTreeMap<&'static str, u32>> = const { RefCell::new(BTreeMap::new()) };
}

/// The id of the counter `name`, defining it on first use; `None` if the
/// host refuses it.
pub fn define(name: &'static str) -> Option<u32> {
    IDS.with(|ids| {
        let mut ids = ids.try_borrow_mut().ok()?;
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let id = host::define_counter(name).ok()?;
        ids.insert(name, id);
        Some(id)
    })
}

/// Adds one to the counter `name`, defining it on first use. A metric the
/// host refuses is skipped: counting must never fail a request.
pub fn increment(name: &'static str) {
    if let Some(id) = define(name) {
        let _ = host::increment_metric(id, 1);
    }
}
