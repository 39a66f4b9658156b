//! Buffers: request/response bodies, the plugin and VM configuration,
//! an http_call's response body.

use wasmtime::Linker;

use super::memory::{copy_out, read, write_u32};
use super::{C, R};
use crate::abi::{buffer, status};
use crate::state::HostState;

pub(super) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, kind: i32, start: i32, max: i32, ptr_ptr: i32, len_ptr: i32| -> R {
            intercept!(c, "proxy_get_buffer_bytes");
            let data = tri!(buffer_contents(c.data_mut(), kind));
            let (start, max) = (start as u32 as usize, max as u32 as usize);
            let slice = if start >= data.len() {
                &[][..]
            } else {
                &data[start..start + max.min(data.len() - start)]
            };
            copy_out(&mut c, slice, ptr_ptr, len_ptr)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: C<'_>, kind: i32, len_ptr: i32, flags_ptr: i32| -> R {
            intercept!(c, "proxy_get_buffer_status");
            let data = tri!(buffer_contents(c.data_mut(), kind));
            tri!(write_u32(&mut c, len_ptr, data.len() as u32));
            tri!(write_u32(&mut c, flags_ptr, 0));
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, kind: i32, start: i32, size: i32, ptr: i32, len: i32| -> R {
            intercept!(c, "proxy_set_buffer_bytes");
            let bytes = tri!(read(&mut c, ptr, len));
            let s = c.data_mut();
            let side = match (kind, s.stream()) {
                (buffer::HTTP_REQUEST_BODY, Some(st)) => &mut st.request,
                (buffer::HTTP_RESPONSE_BODY, Some(st)) => &mut st.response,
                (0..=8, _) => return Ok(status::NOT_FOUND),
                _ => return Ok(status::BAD_ARGUMENT),
            };
            if !(side.in_body_callback || side.buffering) {
                return Ok(status::NOT_FOUND);
            }
            let (start, size) = (start as u32 as usize, size as u32 as usize);
            let body = &mut side.body;
            // Envoy's Buffer::copyFrom: prepend, replace all, or append; a
            // range in the middle is refused.
            if start == 0 {
                if size == 0 {
                    let mut v = bytes;
                    v.extend_from_slice(body);
                    *body = v;
                } else if size >= body.len() {
                    *body = bytes;
                } else {
                    return Ok(status::BAD_ARGUMENT);
                }
            } else if start >= body.len() {
                body.extend_from_slice(&bytes);
            } else {
                return Ok(status::BAD_ARGUMENT);
            }
            Ok(status::OK)
        },
    )?;
    Ok(())
}

fn buffer_contents(s: &mut HostState, kind: i32) -> Result<Vec<u8>, i32> {
    match kind {
        buffer::PLUGIN_CONFIGURATION => {
            // Envoy only has the plugin configuration while configuring.
            if s.in_configure {
                Ok(s.config.plugin_config.clone())
            } else {
                Err(status::NOT_FOUND)
            }
        }
        buffer::VM_CONFIGURATION => Ok(s.config.vm_config.clone()),
        buffer::HTTP_CALL_RESPONSE_BODY => s
            .call_response
            .as_ref()
            .map(|r| r.body.clone())
            .ok_or(status::NOT_FOUND),
        buffer::HTTP_REQUEST_BODY | buffer::HTTP_RESPONSE_BODY => {
            let st = s.stream().ok_or(status::NOT_FOUND)?;
            let side = if kind == buffer::HTTP_REQUEST_BODY {
                &st.request
            } else {
                &st.response
            };
            if side.in_body_callback || side.buffering {
                Ok(side.body.clone())
            } else {
                Err(status::NOT_FOUND)
            }
        }
        2..=8 => Err(status::NOT_FOUND),
        _ => Err(status::BAD_ARGUMENT),
    }
}
