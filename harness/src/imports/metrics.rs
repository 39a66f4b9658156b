//! Metrics: ids are per VM, values per name on the node.

use wasmtime::Linker;

use super::memory::{read_str, write, write_u32};
use super::{C, R};
use crate::abi::{status, MetricKind};
use crate::state::HostState;

pub(super) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, kind: i32, np: i32, nl: i32, ret: i32| -> R {
            intercept!(c, "proxy_define_metric");
            let name = tri!(read_str(&mut c, np, nl));
            let Some(kind) = MetricKind::from_wasm(kind) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let s = c.data_mut();
            if !s.node.define_metric(kind, &name) {
                return Ok(status::BAD_ARGUMENT);
            }
            s.next_metric_id += 1;
            // Like Envoy, the low bits carry the type.
            let id = (s.next_metric_id << 2) | kind as u32;
            s.metric_ids.insert(id, name);
            tri!(write_u32(&mut c, ret, id));
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: C<'_>, id: i32, offset: i64| -> R {
            intercept!(c, "proxy_increment_metric");
            let s = c.data();
            Ok(match s.metric_ids.get(&(id as u32)) {
                Some(name) => s.node.increment_metric(name, offset),
                None => status::NOT_FOUND,
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: C<'_>, id: i32, value: i64| -> R {
            intercept!(c, "proxy_record_metric");
            let s = c.data();
            Ok(match s.metric_ids.get(&(id as u32)) {
                Some(name) => s.node.record_metric(name, value as u64),
                None => status::NOT_FOUND,
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: i32, ret: i32| -> R {
            intercept!(c, "proxy_get_metric");
            let s = c.data();
            let v = match s.metric_ids.get(&(id as u32)) {
                Some(name) => tri!(s.node.get_metric(name)),
                None => return Ok(status::NOT_FOUND),
            };
            tri!(write(&mut c, ret, &v.to_le_bytes()));
            Ok(status::OK)
        },
    )?;
    Ok(())
}
