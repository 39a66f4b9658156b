//! The host functions: proxy-wasm ABI 0.2.x (module `env`) and the WASI
//! preview1 subset Rust modules import, one file per ABI area. A module's
//! bad argument never traps the host: out-of-bounds pointers answer
//! INVALID_MEMORY_ACCESS (WASI: EFAULT), unsupported calls UNIMPLEMENTED
//! (WASI: ENOSYS).

use wasmtime::{Caller, Linker, Module, Val, ValType};

use crate::abi::{errno, status};
use crate::state::HostState;

/// The caller every host function gets, and what a proxy-wasm one returns.
type C<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

/// Unwraps a `Result<_, status>`, returning the status to the module on error.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(s) => return Ok(s),
        }
    };
}

mod buffers;
mod clock;
mod headers;
mod http_calls;
mod logging;
mod memory;
mod metrics;
mod properties;
mod shared;
mod stream_control;
mod wasi;

/// Defines every host function, then answers UNIMPLEMENTED / ENOSYS for any
/// other function the module imports (gRPC, foreign functions, files, ...).
pub(crate) fn link(linker: &mut Linker<HostState>, module: &Module) -> wasmtime::Result<()> {
    logging::define(linker)?;
    clock::define(linker)?;
    buffers::define(linker)?;
    headers::define(linker)?;
    stream_control::define(linker)?;
    http_calls::define(linker)?;
    shared::define(linker)?;
    metrics::define(linker)?;
    properties::define(linker)?;
    wasi::define(linker)?;
    linker.allow_shadowing(false);
    for import in module.imports() {
        let Some(ty) = import.ty().func().cloned() else {
            continue;
        };
        let code = if import.module() == "env" {
            status::UNIMPLEMENTED
        } else {
            errno::NOSYS
        };
        let results: Vec<ValType> = ty.results().collect();
        let name = format!("{}::{}", import.module(), import.name());
        // Defining an already-defined name fails (no shadowing): those are ours.
        let _ = linker.func_new(
            import.module(),
            import.name(),
            ty,
            move |_c, _p, out| match (results.as_slice(), out.first_mut()) {
                ([ValType::I32], Some(slot)) => {
                    *slot = Val::I32(code);
                    Ok(())
                }
                ([], None) => Ok(()),
                _ => Err(wasmtime::format_err!(
                    "the harness does not implement {name} with this signature"
                )),
            },
        );
    }
    Ok(())
}
