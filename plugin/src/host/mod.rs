//! Every host call the filter makes, as a function that cannot panic: a
//! status other than the ones a call documents becomes a [`HostFault`]
//! value, which the caller turns into a fail-closed outcome (the exchange
//! refuses the stream with a `host_call_failed` event).
//!
//! Data the host returns lives in memory it allocated through the module's
//! allocator (`proxy_on_memory_allocate`, one boxed slice of exactly the
//! returned size), so it is taken over as a `Vec` without a copy.

mod abi;
mod pairs;

use std::ptr::{null, null_mut};

use abi::status;
pub use abi::{buffer, map, stream};
use dpp_core::stream::HostFault;
pub use pairs::Pairs;

pub type HostResult<T> = Result<T, HostFault>;

/// Log levels of `proxy_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

fn fault(call: &'static str, status: u32) -> HostFault {
    HostFault::status(call, status)
}

/// Takes over a buffer the host allocated in this module.
///
/// # Safety
/// `data` must be null or come from `proxy_on_memory_allocate(size)`.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the SDK's allocator hands out `Box<[u8]>` of exactly `size`
    // bytes (align 1), which a Vec of length and capacity `size` owns.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

// ---- logging, time, ticks -----------------------------------------------

/// Logging must never fail a request: a lost line is the lesser harm.
pub fn log(level: Level, message: &str) {
    // SAFETY: pointer and length of a live &str.
    let _ = unsafe { abi::proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// Wall-clock time in nanoseconds since the Unix epoch; `None` if the host
/// does not say.
pub fn now_unix_nanos() -> Option<u64> {
    let mut t = 0u64;
    // SAFETY: `t` outlives the call.
    match unsafe { abi::proxy_get_current_time_nanoseconds(&mut t) } {
        status::OK => Some(t),
        _ => None,
    }
}

pub fn set_tick_period(period: std::time::Duration) -> HostResult<()> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    match unsafe { abi::proxy_set_tick_period_milliseconds(ms) } {
        status::OK => Ok(()),
        s => Err(fault("proxy_set_tick_period_milliseconds", s)),
    }
}

/// Makes `context_id` the context later calls act on (from the root's tick).
pub fn set_effective_context(context_id: u32) -> HostResult<()> {
    // SAFETY: no pointers.
    match unsafe { abi::proxy_set_effective_context(context_id) } {
        status::OK => Ok(()),
        s => Err(fault("proxy_set_effective_context", s)),
    }
}

// ---- headers ------------------------------------------------------------

/// One header's first value; `Ok(None)` when absent.
pub fn header(map: u32, name: &str) -> HostResult<Option<String>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: name is a live &str; the out-pointers outlive the call.
    let s = unsafe {
        abi::proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match s {
        // SAFETY: the host allocated `data` for us.
        status::OK => Ok(Some(into_string(unsafe { take(data, size) }))),
        status::NOT_FOUND => Ok(None),
        s => Err(fault("proxy_get_header_map_value", s)),
    }
}

/// The whole header map in the proxy-wasm pairs encoding, in one call.
pub fn header_pairs(map: u32) -> HostResult<Pairs> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the out-pointers outlive the call.
    match unsafe { abi::proxy_get_header_map_pairs(map, &mut data, &mut size) } {
        // SAFETY: the host allocated `data` for us.
        status::OK => Pairs::parse(unsafe { take(data, size) })
            .ok_or_else(|| HostFault::short_read("proxy_get_header_map_pairs")),
        s => Err(fault("proxy_get_header_map_pairs", s)),
    }
}

pub fn set_header(map: u32, name: &str, value: &str) -> HostResult<()> {
    // SAFETY: live &strs.
    let s = unsafe {
        abi::proxy_replace_header_map_value(
            map,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    match s {
        status::OK => Ok(()),
        s => Err(fault("proxy_replace_header_map_value", s)),
    }
}

pub fn remove_header(map: u32, name: &str) -> HostResult<()> {
    // SAFETY: a live &str.
    match unsafe { abi::proxy_remove_header_map_value(map, name.as_ptr(), name.len()) } {
        status::OK => Ok(()),
        s => Err(fault("proxy_remove_header_map_value", s)),
    }
}

// ---- bodies -------------------------------------------------------------

/// `len` bytes of a buffer from `start`. A buffer the host does not have
/// (NOT_FOUND) is a fault: the caller asked for bytes it was told exist.
pub fn buffer_bytes(kind: u32, start: usize, len: usize) -> HostResult<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the out-pointers outlive the call.
    match unsafe { abi::proxy_get_buffer_bytes(kind, start, len, &mut data, &mut size) } {
        // SAFETY: the host allocated `data` for us.
        status::OK => Ok(unsafe { take(data, size) }),
        s => Err(fault("proxy_get_buffer_bytes", s)),
    }
}

/// Replaces `size` bytes of a buffer from `start` with `bytes`.
pub fn set_buffer_bytes(kind: u32, start: usize, size: usize, bytes: &[u8]) -> HostResult<()> {
    // SAFETY: a live slice.
    match unsafe { abi::proxy_set_buffer_bytes(kind, start, size, bytes.as_ptr(), bytes.len()) } {
        status::OK => Ok(()),
        s => Err(fault("proxy_set_buffer_bytes", s)),
    }
}

/// The plugin configuration (readable in on_configure only). A host that
/// has none gives an empty configuration, which the policy parser refuses.
pub fn plugin_configuration() -> Vec<u8> {
    buffer_bytes(buffer::PLUGIN_CONFIGURATION, 0, usize::MAX).unwrap_or_default()
}

// ---- properties ---------------------------------------------------------

/// A property's raw value; `Ok(None)` when the host has none (not found,
/// empty, or a value it cannot serialize, as Envoy answers for absent
/// metadata).
pub fn property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    // Segments joined by NUL, on the stack for the paths the filter uses.
    let mut buf = [0u8; 96];
    let mut heap;
    let joined_len: usize = path
        .iter()
        .map(|p| p.len() + 1)
        .sum::<usize>()
        .saturating_sub(1);
    let joined: &mut [u8] = if joined_len <= buf.len() {
        &mut buf[..joined_len]
    } else {
        heap = vec![0u8; joined_len];
        &mut heap
    };
    let mut at = 0;
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            at += 1; // the NUL already there
        }
        joined[at..at + seg.len()].copy_from_slice(seg.as_bytes());
        at += seg.len();
    }
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: a live slice; the out-pointers outlive the call.
    let s = unsafe { abi::proxy_get_property(joined.as_ptr(), joined.len(), &mut data, &mut size) };
    match s {
        // SAFETY: the host allocated `data` for us.
        status::OK => Ok(Some(unsafe { take(data, size) })),
        status::NOT_FOUND | status::EMPTY | status::SERIALIZATION_FAILURE => Ok(None),
        s => Err(fault("proxy_get_property", s)),
    }
}

/// A string property; errors and empty or non-UTF-8 values count as absent.
/// For facts that only inform (the upstream guard's reads, where an absent
/// value is the cautious reading).
pub fn property_string(path: &[&str]) -> Option<String> {
    property(path)
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
        .filter(|s| !s.is_empty())
}

/// Writes filter state `wasm.<name>` (single-segment path).
pub fn set_property(name: &str, value: &[u8]) -> HostResult<()> {
    // SAFETY: live slices.
    let s =
        unsafe { abi::proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    match s {
        status::OK => Ok(()),
        s => Err(fault("proxy_set_property", s)),
    }
}

// ---- shared data ------------------------------------------------------

/// A shared-data value and its CAS token; `Ok(None)` when the key is absent.
pub fn shared_data(key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: a live &str; the out-pointers outlive the call.
    let s = unsafe {
        abi::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
    };
    match s {
        // SAFETY: the host allocated `data` for us.
        status::OK => Ok(Some((unsafe { take(data, size) }, cas))),
        status::NOT_FOUND => Ok(None),
        s => Err(fault("proxy_get_shared_data", s)),
    }
}

/// Writes a shared-data value if its token is still `cas` (0: always);
/// `Ok(false)` when another worker wrote first.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> HostResult<bool> {
    // SAFETY: live slices.
    let s = unsafe {
        abi::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    };
    match s {
        status::OK => Ok(true),
        status::CAS_MISMATCH => Ok(false),
        s => Err(fault("proxy_set_shared_data", s)),
    }
}

// ---- stream control -----------------------------------------------------

/// Answers the current stream locally.
pub fn send_local_response(
    status_code: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HostResult<()> {
    let headers = pairs::serialize(headers);
    // SAFETY: live slices; no details string (Envoy derives it).
    let s = unsafe {
        abi::proxy_send_local_response(
            status_code,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    match s {
        status::OK => Ok(()),
        s => Err(fault("proxy_send_local_response", s)),
    }
}

/// Resets the current stream (the last resort of fail closed).
pub fn close_stream(which: u32) -> HostResult<()> {
    // SAFETY: no pointers.
    match unsafe { abi::proxy_close_stream(which) } {
        status::OK => Ok(()),
        s => Err(fault("proxy_close_stream", s)),
    }
}

/// Resumes a request the filter paused.
pub fn resume_request() -> HostResult<()> {
    // SAFETY: no pointers.
    match unsafe { abi::proxy_continue_stream(stream::REQUEST) } {
        status::OK => Ok(()),
        s => Err(fault("proxy_continue_stream", s)),
    }
}

// ---- metrics ------------------------------------------------------------

/// Defines a counter; its id.
pub fn define_counter(name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    // SAFETY: a live &str; `id` outlives the call.
    match unsafe { abi::proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) } {
        status::OK => Ok(id),
        s => Err(fault("proxy_define_metric", s)),
    }
}

pub fn increment_metric(id: u32, by: i64) -> HostResult<()> {
    // SAFETY: no pointers.
    match unsafe { abi::proxy_increment_metric(id, by) } {
        status::OK => Ok(()),
        s => Err(fault("proxy_increment_metric", s)),
    }
}

fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
