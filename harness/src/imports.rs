//! The host functions: proxy-wasm ABI 0.2.x (module `env`) and the WASI
//! preview1 subset Rust modules import. A module's bad argument never traps
//! the host: out-of-bounds pointers answer INVALID_MEMORY_ACCESS (WASI:
//! EFAULT), unsupported calls UNIMPLEMENTED (WASI: ENOSYS).

use wasmtime::{Caller, Extern, Linker, Module, Val, ValType};

use crate::abi::{buffer, errno, map, status, stream, LogLevel, MetricKind};
use crate::hostcalls;
use crate::properties::Properties;
use crate::state::{
    header_value, CallResponse, Deferred, Headers, HostState, HttpCall, LocalReply, Side,
};
use crate::vm::HttpCallScript;

type C<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

// ---- guest memory -------------------------------------------------------

fn memory(c: &mut C<'_>) -> Option<wasmtime::Memory> {
    match c.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn read(c: &mut C<'_>, ptr: i32, len: i32) -> Result<Vec<u8>, i32> {
    let mem = memory(c).ok_or(status::INVALID_MEMORY_ACCESS)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let end = ptr.checked_add(len).ok_or(status::INVALID_MEMORY_ACCESS)?;
    mem.data(&*c)
        .get(ptr..end)
        .map(<[u8]>::to_vec)
        .ok_or(status::INVALID_MEMORY_ACCESS)
}

fn read_str(c: &mut C<'_>, ptr: i32, len: i32) -> Result<String, i32> {
    Ok(String::from_utf8_lossy(&read(c, ptr, len)?).into_owned())
}

fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Result<(), i32> {
    let mem = memory(c).ok_or(status::INVALID_MEMORY_ACCESS)?;
    let ptr = ptr as u32 as usize;
    let end = ptr
        .checked_add(bytes.len())
        .ok_or(status::INVALID_MEMORY_ACCESS)?;
    mem.data_mut(&mut *c)
        .get_mut(ptr..end)
        .ok_or(status::INVALID_MEMORY_ACCESS)?
        .copy_from_slice(bytes);
    Ok(())
}

fn write_u32(c: &mut C<'_>, ptr: i32, v: u32) -> Result<(), i32> {
    write(c, ptr, &v.to_le_bytes())
}

/// Copies `data` into memory the module allocates and stores the pointer and
/// length at `ptr_ptr` / `len_ptr`. An allocator trap is the module's fault
/// and propagates as a trap.
fn copy_out(c: &mut C<'_>, data: &[u8], ptr_ptr: i32, len_ptr: i32) -> wasmtime::Result<i32> {
    // Check the out-pointers first so a bad pointer does not leak an allocation.
    if let Err(s) = write_u32(c, ptr_ptr, 0).and_then(|_| write_u32(c, len_ptr, 0)) {
        return Ok(s);
    }
    if data.is_empty() {
        return Ok(status::OK);
    }
    hostcalls::allocated(c.data_mut());
    let alloc = c.data().allocator;
    let Some(Extern::Func(f)) = c.get_export(alloc) else {
        return Ok(status::INTERNAL_FAILURE);
    };
    let f = f.typed::<i32, i32>(&*c)?;
    let addr = f.call(&mut *c, data.len() as i32)?;
    if addr == 0 {
        return Ok(status::INTERNAL_FAILURE);
    }
    if let Err(s) = write(c, addr, data) {
        return Ok(s);
    }
    match write_u32(c, ptr_ptr, addr as u32).and_then(|_| write_u32(c, len_ptr, data.len() as u32))
    {
        Ok(()) => Ok(status::OK),
        Err(s) => Ok(s),
    }
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(s) => return Ok(s),
        }
    };
}

// ---- header maps --------------------------------------------------------

/// proxy-wasm pairs encoding: u32 count, (u32 klen, u32 vlen)*, then each
/// key and value NUL-terminated.
pub(crate) fn serialize_pairs(pairs: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

pub(crate) fn deserialize_pairs(bytes: &[u8]) -> Option<Headers> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let n = u32_at(0)?;
    let mut sizes = Vec::new();
    let mut pos = 4usize;
    for _ in 0..n {
        sizes.push((u32_at(pos)?, u32_at(pos + 4)?));
        pos = pos.checked_add(8)?;
    }
    let mut out = Vec::new();
    for (kl, vl) in sizes {
        let k = bytes.get(pos..pos.checked_add(kl)?)?;
        pos = pos.checked_add(kl + 1)?;
        let v = bytes.get(pos..pos.checked_add(vl)?)?;
        pos = pos.checked_add(vl + 1)?;
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Some(out)
}

/// The map a call refers to, if Envoy would have it at this moment.
fn header_map(s: &mut HostState, kind: i32) -> Result<Option<&mut Headers>, i32> {
    if kind == map::HTTP_CALL_RESPONSE_HEADERS || kind == map::HTTP_CALL_RESPONSE_TRAILERS {
        return Ok(s.call_response.as_mut().map(|r| {
            if kind == map::HTTP_CALL_RESPONSE_HEADERS {
                &mut r.headers
            } else {
                &mut r.trailers
            }
        }));
    }
    let Some(st) = s.stream() else {
        return match kind {
            0..=3 => Ok(None),
            _ => Err(status::BAD_ARGUMENT),
        };
    };
    let in_log = st.in_log;
    Ok(match kind {
        map::HTTP_REQUEST_HEADERS => pick(&mut st.request, false, in_log),
        map::HTTP_REQUEST_TRAILERS => pick(&mut st.request, true, in_log),
        map::HTTP_RESPONSE_HEADERS => pick(&mut st.response, false, in_log),
        map::HTTP_RESPONSE_TRAILERS => pick(&mut st.response, true, in_log),
        _ => return Err(status::BAD_ARGUMENT),
    })
}

fn pick(side: &mut Side, trailers: bool, in_log: bool) -> Option<&mut Headers> {
    if trailers {
        (side.trailers_accessible || in_log).then_some(&mut side.trailers)
    } else {
        (side.headers_accessible || in_log).then_some(&mut side.headers)
    }
}

fn is_mutable_map(kind: i32, in_log: bool) -> bool {
    !in_log && (0..=3).contains(&kind)
}

fn stream_in_log(s: &mut HostState) -> bool {
    s.stream().map(|st| st.in_log).unwrap_or(false)
}

// ---- properties ---------------------------------------------------------

fn lookup_property(s: &mut HostState, path: &[String]) -> Result<Vec<u8>, i32> {
    let joined = path.join(".");
    let cfg = s.config.clone();
    if let Some(st) = s.stream() {
        if let Some(v) = st.properties.get(path) {
            return Ok(v.encode());
        }
        if let Some(v) = st.filter_state.get(&format!("wasm.{joined}")) {
            return Ok(v.clone());
        }
        if let Some(v) = derived_stream_property(st, path) {
            return Ok(v);
        }
    }
    if let Some(v) = cfg.properties.get(path) {
        return Ok(v.encode());
    }
    match joined.as_str() {
        "plugin_name" => Ok(cfg.plugin_name.as_bytes().to_vec()),
        "plugin_root_id" => Ok(cfg.root_id.as_bytes().to_vec()),
        "plugin_vm_id" => Ok(cfg.vm_id.as_bytes().to_vec()),
        _ => Err(status::NOT_FOUND),
    }
}

/// request.* / response.* attributes Envoy derives from the stream.
fn derived_stream_property(st: &crate::state::StreamState, path: &[String]) -> Option<Vec<u8>> {
    let req = &st.request.headers;
    let h = |name: &str| header_value(req, name).map(|v| v.as_bytes().to_vec());
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["request", "path"] => h(":path"),
        ["request", "url_path"] => header_value(req, ":path")
            .map(|p| p.split_once('?').map_or(p, |(a, _)| a).as_bytes().to_vec()),
        ["request", "host"] => h(":authority"),
        ["request", "method"] => h(":method"),
        ["request", "scheme"] => h(":scheme"),
        ["request", "id"] => h("x-request-id"),
        ["request", "referer"] => h("referer"),
        ["request", "useragent"] => h("user-agent"),
        ["request", "protocol"] => Some(b"HTTP/1.1".to_vec()),
        ["request", "headers", name] => h(name),
        ["response", "code"] if st.response.started => {
            header_value(&st.response.headers, ":status")
                .and_then(|v| v.parse::<i64>().ok())
                .map(|c| c.to_le_bytes().to_vec())
        }
        ["response", "code_details"] if st.response.started => Some(
            st.local_reply
                .as_ref()
                .map_or("via_upstream".as_bytes().to_vec(), |r| {
                    r.details.as_bytes().to_vec()
                }),
        ),
        ["response", "headers", name] if st.response.started => {
            header_value(&st.response.headers, name).map(|v| v.as_bytes().to_vec())
        }
        _ => None,
    }
}

// ---- the linker ---------------------------------------------------------

/// Defines every host function, then answers UNIMPLEMENTED / ENOSYS for any
/// other function the module imports (gRPC, foreign functions, files, ...).
pub(crate) fn link(linker: &mut Linker<HostState>, module: &Module) -> wasmtime::Result<()> {
    define_proxy(linker)?;
    define_wasi(linker)?;
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

fn define_proxy(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
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

    // Buffers.
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

    // Header maps.
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, kind: i32, ptr_ptr: i32, len_ptr: i32| -> R {
            intercept!(c, "proxy_get_header_map_pairs");
            let pairs = match tri!(header_map(c.data_mut(), kind)) {
                Some(m) => m.clone(),
                None => Vec::new(),
            };
            copy_out(&mut c, &serialize_pairs(&pairs), ptr_ptr, len_ptr)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C<'_>, kind: i32, ret: i32| -> R {
            intercept!(c, "proxy_get_header_map_size");
            // Envoy answers the map's byte size (keys and values).
            let size = match tri!(header_map(c.data_mut(), kind)) {
                Some(m) => m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
                None => return Ok(status::BAD_ARGUMENT),
            };
            tri!(write_u32(&mut c, ret, size as u32));
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, kind: i32, kp: i32, kl: i32, ptr_ptr: i32, len_ptr: i32| -> R {
            intercept!(c, "proxy_get_header_map_value");
            let key = tri!(read_str(&mut c, kp, kl)).to_ascii_lowercase();
            let in_log = stream_in_log(c.data_mut());
            let value = match tri!(header_map(c.data_mut(), kind)) {
                Some(m) => header_value(m, &key).map(str::to_string),
                // Envoy: a map it no longer (or not yet) holds is a bad
                // argument, except in the access-log phase. (The Rust SDK
                // panics on it; measured in Envoy 1.40 by the fidelity tests.)
                None if !in_log => return Ok(status::BAD_ARGUMENT),
                None => None,
            };
            match value {
                Some(v) => copy_out(&mut c, v.as_bytes(), ptr_ptr, len_ptr),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, kind: i32, ptr: i32, len: i32| -> R {
            intercept!(c, "proxy_set_header_map_pairs");
            let bytes = tri!(read(&mut c, ptr, len));
            let Some(pairs) = deserialize_pairs(&bytes) else {
                return Ok(status::BAD_ARGUMENT);
            };
            mutate_map(c.data_mut(), kind, |m| {
                *m = pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
            })
        },
    )?;
    for (name, op) in [
        ("proxy_add_header_map_value", 0u8),
        ("proxy_replace_header_map_value", 1u8),
    ] {
        l.func_wrap(
            "env",
            name,
            move |mut c: C<'_>, kind: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> R {
                intercept!(c, name);
                let key = tri!(read_str(&mut c, kp, kl)).to_ascii_lowercase();
                let value = tri!(read_str(&mut c, vp, vl));
                mutate_map(c.data_mut(), kind, |m| {
                    if op == 1 {
                        if let Some(i) = m.iter().position(|(k, _)| *k == key) {
                            m[i].1 = value;
                            let mut seen = false;
                            m.retain(|(k, _)| {
                                if *k != key {
                                    return true;
                                }
                                let keep = !seen;
                                seen = true;
                                keep
                            });
                            return;
                        }
                    }
                    m.push((key, value));
                })
            },
        )?;
    }
    l.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, kind: i32, kp: i32, kl: i32| -> R {
            intercept!(c, "proxy_remove_header_map_value");
            let key = tri!(read_str(&mut c, kp, kl)).to_ascii_lowercase();
            mutate_map(c.data_mut(), kind, |m| m.retain(|(k, _)| *k != key))
        },
    )?;

    // Stream control: Envoy defers these until the VM call returns.
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

    // HTTP callouts.
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

    // Shared data and queues, scoped by vm_id across all VMs of the node.
    l.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, ptr_ptr: i32, len_ptr: i32, cas_ptr: i32| -> R {
            intercept!(c, "proxy_get_shared_data");
            let key = tri!(read_str(&mut c, kp, kl));
            let s = c.data();
            let Some((value, cas)) = s.node.shared_data(&s.config.vm_id, &key) else {
                return Ok(status::NOT_FOUND);
            };
            tri!(write_u32(&mut c, cas_ptr, cas));
            copy_out(&mut c, &value, ptr_ptr, len_ptr)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> R {
            intercept!(c, "proxy_set_shared_data");
            let key = tri!(read_str(&mut c, kp, kl));
            let value = tri!(read(&mut c, vp, vl));
            let s = c.data();
            Ok(s.node
                .set_shared_data(&s.config.vm_id, &key, &value, cas as u32))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: i32, nl: i32, ret: i32| -> R {
            intercept!(c, "proxy_register_shared_queue");
            let name = tri!(read_str(&mut c, np, nl));
            let s = c.data();
            let id = s
                .node
                .register_queue(&s.config.vm_id, &name, s.vm_key, s.effective_context);
            tri!(write_u32(&mut c, ret, id));
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| -> R {
            intercept!(c, "proxy_resolve_shared_queue");
            let vm_id = tri!(read_str(&mut c, vp, vl));
            let name = tri!(read_str(&mut c, np, nl));
            let Some(id) = c.data().node.resolve_queue(&vm_id, &name) else {
                return Ok(status::NOT_FOUND);
            };
            tri!(write_u32(&mut c, ret, id));
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: i32, vp: i32, vl: i32| -> R {
            intercept!(c, "proxy_enqueue_shared_queue");
            let value = tri!(read(&mut c, vp, vl));
            Ok(match c.data().node.enqueue(id as u32, &value) {
                Ok(_) => status::OK,
                Err(s) => s,
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: i32, ptr_ptr: i32, len_ptr: i32| -> R {
            intercept!(c, "proxy_dequeue_shared_queue");
            let item = tri!(c.data().node.dequeue(id as u32));
            copy_out(&mut c, &item, ptr_ptr, len_ptr)
        },
    )?;

    // Metrics: ids are per VM, values per name on the node.
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

    // Properties.
    l.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, pp: i32, pl: i32, ptr_ptr: i32, len_ptr: i32| -> R {
            intercept!(c, "proxy_get_property");
            let raw = tri!(read(&mut c, pp, pl));
            let path: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            let value = tri!(lookup_property(c.data_mut(), &path));
            copy_out(&mut c, &value, ptr_ptr, len_ptr)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> R {
            intercept!(c, "proxy_set_property");
            let raw = tri!(read(&mut c, pp, pl));
            let value = tri!(read(&mut c, vp, vl));
            let path: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            let Some(st) = c.data_mut().stream() else {
                // No stream info outside a stream, as in Envoy.
                return Ok(status::NOT_FOUND);
            };
            st.filter_state
                .insert(format!("wasm.{}", path.join(".")), value);
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

fn mutate_map(s: &mut HostState, kind: i32, f: impl FnOnce(&mut Headers)) -> R {
    let in_log = stream_in_log(s);
    if !is_mutable_map(kind, in_log) {
        return Ok(status::BAD_ARGUMENT);
    }
    match tri!(header_map(s, kind)) {
        Some(m) => {
            f(m);
            Ok(status::OK)
        }
        // Envoy no longer holds this map (already passed on, or not yet received).
        None => Ok(status::BAD_ARGUMENT),
    }
}

// ---- WASI preview1 ------------------------------------------------------

fn define_wasi(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const W: &str = "wasi_snapshot_preview1";
    fn e(r: Result<(), i32>) -> i32 {
        match r {
            Ok(()) => errno::SUCCESS,
            Err(_) => errno::FAULT,
        }
    }
    l.func_wrap(
        W,
        "fd_write",
        |mut c: C<'_>, fd: i32, iovs: i32, n: i32, written: i32| -> R {
            if fd != 1 && fd != 2 {
                return Ok(errno::BADF);
            }
            let mut data = Vec::new();
            for i in 0..n.max(0) {
                let Ok(iov) = read(&mut c, iovs.wrapping_add(i.wrapping_mul(8)), 8) else {
                    return Ok(errno::FAULT);
                };
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                match read(&mut c, ptr, len) {
                    Ok(b) => data.extend_from_slice(&b),
                    Err(_) => return Ok(errno::FAULT),
                }
            }
            if write_u32(&mut c, written, data.len() as u32).is_err() {
                return Ok(errno::FAULT);
            }
            // Envoy logs a module's stdout at info and stderr at error, per line.
            let s = c.data_mut();
            let idx = (fd - 1) as usize;
            s.stdio_partial[idx].extend_from_slice(&data);
            while let Some(pos) = s.stdio_partial[idx].iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = s.stdio_partial[idx].drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                let level = if fd == 1 {
                    LogLevel::Info
                } else {
                    LogLevel::Error
                };
                s.log(level, text);
            }
            Ok(errno::SUCCESS)
        },
    )?;
    l.func_wrap(
        W,
        "fd_read",
        |_c: C<'_>, _: i32, _: i32, _: i32, _: i32| -> R { Ok(errno::BADF) },
    )?;
    l.func_wrap(W, "fd_close", |_c: C<'_>, _fd: i32| -> R {
        Ok(errno::BADF)
    })?;
    l.func_wrap(
        W,
        "fd_seek",
        |_c: C<'_>, _fd: i32, _off: i64, _wh: i32, _ret: i32| -> R { Ok(errno::BADF) },
    )?;
    // No preopened directories: std::fs finds nothing, as in Envoy.
    l.func_wrap(W, "fd_prestat_get", |_c: C<'_>, _fd: i32, _p: i32| -> R {
        Ok(errno::BADF)
    })?;
    l.func_wrap(
        W,
        "fd_prestat_dir_name",
        |_c: C<'_>, _fd: i32, _p: i32, _l: i32| -> R { Ok(errno::BADF) },
    )?;
    l.func_wrap(W, "fd_fdstat_get", |mut c: C<'_>, fd: i32, ret: i32| -> R {
        if !(0..=2).contains(&fd) {
            return Ok(errno::BADF);
        }
        // filetype CHARACTER_DEVICE (2), no flags, no rights restrictions.
        let mut stat = [0u8; 24];
        stat[0] = 2;
        stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        stat[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        Ok(e(write(&mut c, ret, &stat)))
    })?;
    l.func_wrap(W, "random_get", |mut c: C<'_>, ptr: i32, len: i32| -> R {
        // Bound the request before allocating: the length comes from the module.
        if len as u32 > 1 << 20 {
            return Ok(errno::INVAL);
        }
        let mut buf = vec![0u8; len as u32 as usize];
        if getrandom::fill(&mut buf).is_err() {
            return Ok(errno::NOSYS);
        }
        Ok(e(write(&mut c, ptr, &buf)))
    })?;
    l.func_wrap(
        W,
        "clock_time_get",
        |mut c: C<'_>, id: i32, _precision: i64, ret: i32| -> R {
            let s = c.data();
            let t = match id {
                0 => s.realtime_ns(),
                1..=3 => s.now_ns,
                _ => return Ok(errno::INVAL),
            };
            Ok(e(write(&mut c, ret, &t.to_le_bytes())))
        },
    )?;
    l.func_wrap(W, "clock_res_get", |mut c: C<'_>, id: i32, ret: i32| -> R {
        if !(0..=3).contains(&id) {
            return Ok(errno::INVAL);
        }
        Ok(e(write(&mut c, ret, &1u64.to_le_bytes())))
    })?;
    l.func_wrap(
        W,
        "environ_sizes_get",
        |mut c: C<'_>, count_ptr: i32, size_ptr: i32| -> R {
            let env = c.data().config.env.clone();
            let size: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            Ok(e(write_u32(&mut c, count_ptr, env.len() as u32)
                .and_then(|_| write_u32(&mut c, size_ptr, size as u32))))
        },
    )?;
    l.func_wrap(W, "environ_get", |mut c: C<'_>, ptrs: i32, buf: i32| -> R {
        let env = c.data().config.env.clone();
        let mut off = 0i32;
        for (i, (k, v)) in env.iter().enumerate() {
            let entry = format!("{k}={v}\0");
            let r = write_u32(
                &mut c,
                ptrs.wrapping_add(4 * i as i32),
                buf.wrapping_add(off) as u32,
            )
            .and_then(|_| write(&mut c, buf.wrapping_add(off), entry.as_bytes()));
            if r.is_err() {
                return Ok(errno::FAULT);
            }
            off = off.wrapping_add(entry.len() as i32);
        }
        Ok(errno::SUCCESS)
    })?;
    l.func_wrap(
        W,
        "args_sizes_get",
        |mut c: C<'_>, count_ptr: i32, size_ptr: i32| -> R {
            Ok(e(
                write_u32(&mut c, count_ptr, 0).and_then(|_| write_u32(&mut c, size_ptr, 0))
            ))
        },
    )?;
    l.func_wrap(W, "args_get", |_c: C<'_>, _a: i32, _b: i32| -> R {
        Ok(errno::SUCCESS)
    })?;
    l.func_wrap(W, "sched_yield", |_c: C<'_>| -> R { Ok(errno::SUCCESS) })?;
    l.func_wrap(
        W,
        "proc_exit",
        |_c: C<'_>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::format_err!("module called proc_exit({code})"))
        },
    )?;
    Ok(())
}

/// Properties the harness sets on every stream unless the test overrides them.
pub(crate) fn default_stream_properties() -> Properties {
    let mut p = Properties::default();
    p.set("source.address", "127.0.0.1:50000")
        .set("destination.address", "127.0.0.1:10000")
        .set("connection.mtls", false);
    p
}

pub(crate) fn call_response_from(script: &HttpCallScript) -> Option<CallResponse> {
    match script {
        HttpCallScript::Respond {
            status,
            headers,
            body,
            trailers,
        } => {
            let mut h = vec![(":status".to_string(), status.to_string())];
            h.extend(headers.iter().cloned());
            Some(CallResponse {
                headers: h,
                body: body.clone(),
                trailers: trailers.clone(),
            })
        }
        HttpCallScript::Fail | HttpCallScript::Manual => None,
    }
}
