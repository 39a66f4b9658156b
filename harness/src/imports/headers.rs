//! Header and trailer maps of the stream and of an http_call response.

use wasmtime::Linker;

use super::memory::{copy_out, read, read_str, write_u32};
use super::{C, R};
use crate::abi::{map, status};
use crate::headers::{header_value, Headers};
use crate::state::{HostState, Side};

/// proxy-wasm pairs encoding: u32 count, (u32 klen, u32 vlen)*, then each
/// key and value NUL-terminated.
pub(super) fn serialize_pairs(pairs: &Headers) -> Vec<u8> {
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

pub(super) fn deserialize_pairs(bytes: &[u8]) -> Option<Headers> {
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

pub(super) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
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
    Ok(())
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
