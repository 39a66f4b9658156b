//! Time and timers: the virtual clock and the tick period (on_tick is
//! fired by `Vm::advance`).

use wasmtime::Linker;

use super::memory::write;
use super::{C, R};
use crate::abi::status;
use crate::state::HostState;

pub(super) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: i32| -> R {
            intercept!(c, "proxy_get_current_time_nanoseconds");
            let now = c.data().realtime_ns();
            tri!(write(&mut c, ret, &now.to_le_bytes()));
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, period: i32| -> R {
            intercept!(c, "proxy_set_tick_period_milliseconds");
            let s = c.data_mut();
            s.tick_period_ms = period as u32;
            s.next_tick_ns = s
                .now_ns
                .saturating_add(u64::from(s.tick_period_ms) * 1_000_000);
            Ok(status::OK)
        },
    )?;
    Ok(())
}
