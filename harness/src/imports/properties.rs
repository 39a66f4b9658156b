//! Properties (Envoy attributes): lookup, the request/response attributes
//! Envoy derives from the stream, and filter state written by the module.

use wasmtime::Linker;

use super::memory::{copy_out, read};
use super::{C, R};
use crate::abi::status;
use crate::headers::header_value;
use crate::state::{HostState, StreamState};

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
fn derived_stream_property(st: &StreamState, path: &[String]) -> Option<Vec<u8>> {
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

pub(super) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
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
    Ok(())
}
