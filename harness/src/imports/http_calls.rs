//! HTTP callouts (`proxy_http_call`) and the status of the last one.

use wasmtime::Linker;

use super::headers::deserialize_pairs;
use super::memory::{copy_out, read, read_str, write_u32};
use super::{C, R};
use crate::abi::status;
use crate::headers::header_value;
use crate::state::{HostState, HttpCall};

pub(super) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         token_ptr: i32|
         -> R {
            intercept!(c, "proxy_http_call");
            let upstream = tri!(read_str(&mut c, up, ul));
            let hb = tri!(read(&mut c, hp, hl));
            let body = tri!(read(&mut c, bp, bl));
            let tb = tri!(read(&mut c, tp, tl));
            let (Some(headers), Some(trailers)) = (deserialize_pairs(&hb), deserialize_pairs(&tb))
            else {
                return Ok(status::BAD_ARGUMENT);
            };
            if timeout < 0 || !c.data().http_scripts.contains_key(&upstream) {
                // Envoy: a negative timeout or an unknown cluster is a bad argument.
                return Ok(status::BAD_ARGUMENT);
            }
            if [":path", ":method", ":authority"]
                .iter()
                .any(|h| header_value(&headers, h).is_none())
            {
                return Ok(status::BAD_ARGUMENT);
            }
            let s = c.data_mut();
            s.next_token += 1;
            let token = s.next_token;
            tri!(write_u32(&mut c, token_ptr, token));
            let s = c.data_mut();
            s.http_calls.push(HttpCall {
                token,
                context_id: s.effective_context,
                upstream,
                headers,
                body,
                trailers,
                timeout_ms: timeout as u32,
            });
            s.pending_calls.push_back(token);
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C<'_>, code_ptr: i32, msg_ptr: i32, msg_len: i32| -> R {
            intercept!(c, "proxy_get_status");
            let (code, msg) = c.data().status.clone();
            tri!(write_u32(&mut c, code_ptr, code));
            copy_out(&mut c, msg.as_bytes(), msg_ptr, msg_len)
        },
    )?;
    Ok(())
}
