//! Logging: `proxy_log` and the log level the module may ask for.

use wasmtime::Linker;

use super::memory::{read_str, write_u32};
use super::{C, R};
use crate::abi::{status, LogLevel};
use crate::state::HostState;

pub(super) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> R {
            intercept!(c, "proxy_log");
            let msg = tri!(read_str(&mut c, ptr, len));
            let Some(level) = LogLevel::from_wasm(level) else {
                return Ok(status::BAD_ARGUMENT);
            };
            c.data_mut().log(level, msg);
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, ret: i32| -> R {
            intercept!(c, "proxy_get_log_level");
            let lvl = c.data().config.log_level as u32;
            tri!(write_u32(&mut c, ret, lvl));
            Ok(status::OK)
        },
    )?;
    Ok(())
}
