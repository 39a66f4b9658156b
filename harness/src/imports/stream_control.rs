//! Stream control (continue, close, local reply) and contexts. Envoy
//! defers stream actions until the VM call returns.

use wasmtime::Linker;

use super::headers::deserialize_pairs;
use super::memory::{read, read_str};
use super::{C, R};
use crate::abi::{status, stream};
use crate::state::{Deferred, HostState, LocalReply};

pub(super) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: C<'_>, which: i32| -> R {
            intercept!(c, "proxy_continue_stream");
            let s = c.data_mut();
            if !(0..=3).contains(&which) {
                return Ok(status::BAD_ARGUMENT);
            }
            if which > stream::HTTP_RESPONSE {
                return Ok(status::UNIMPLEMENTED);
            }
            let id = s.effective_context;
            if s.streams.contains_key(&id) {
                s.deferred.push(Deferred::Continue(id, which));
            }
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: C<'_>, which: i32| -> R {
            intercept!(c, "proxy_close_stream");
            let s = c.data_mut();
            if !(0..=3).contains(&which) {
                return Ok(status::BAD_ARGUMENT);
            }
            let id = s.effective_context;
            if s.streams.contains_key(&id) {
                s.deferred.push(Deferred::Close(id));
            }
            Ok(status::OK)
        },
    )?;
    // ABI 0.1.0 spellings still used by older SDKs.
    l.func_wrap("env", "proxy_continue_request", |mut c: C<'_>| -> R {
        intercept!(c, "proxy_continue_request");
        let s = c.data_mut();
        let id = s.effective_context;
        if s.streams.contains_key(&id) {
            s.deferred
                .push(Deferred::Continue(id, stream::HTTP_REQUEST));
        }
        Ok(status::OK)
    })?;
    l.func_wrap("env", "proxy_continue_response", |mut c: C<'_>| -> R {
        intercept!(c, "proxy_continue_response");
        let s = c.data_mut();
        let id = s.effective_context;
        if s.streams.contains_key(&id) {
            s.deferred
                .push(Deferred::Continue(id, stream::HTTP_RESPONSE));
        }
        Ok(status::OK)
    })?;
    l.func_wrap("env", "proxy_clear_route_cache", |mut c: C<'_>| -> R {
        intercept!(c, "proxy_clear_route_cache");
        Ok(status::OK)
    })?;
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         code: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         grpc: i32|
         -> R {
            intercept!(c, "proxy_send_local_response");
            let details = tri!(read_str(&mut c, dp, dl));
            let body = tri!(read(&mut c, bp, bl));
            let hbytes = tri!(read(&mut c, hp, hl));
            let Some(headers) = deserialize_pairs(&hbytes) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let s = c.data_mut();
            let id = s.effective_context;
            if !s.streams.contains_key(&id) {
                return Ok(status::NOT_FOUND);
            }
            let headers = headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            s.deferred.push(Deferred::LocalReply(
                id,
                LocalReply {
                    status: code as u32,
                    details: details.replace(char::is_whitespace, "_"),
                    body,
                    headers,
                    grpc_status: grpc,
                },
            ));
            Ok(status::OK)
        },
    )?;

    // Contexts.
    l.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: i32| -> R {
            intercept!(c, "proxy_set_effective_context");
            let s = c.data_mut();
            let id = id as u32;
            if id != s.root_context && !s.streams.contains_key(&id) {
                return Ok(status::BAD_ARGUMENT);
            }
            s.effective_context = id;
            Ok(status::OK)
        },
    )?;
    l.func_wrap("env", "proxy_done", |mut c: C<'_>| -> R {
        intercept!(c, "proxy_done");
        Ok(status::OK)
    })?;
    Ok(())
}
