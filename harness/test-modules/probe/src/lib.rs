//! A proxy-wasm filter that exercises one host feature per request, chosen
//! by the `x-probe` request header. The harness self-tests run it; it is
//! not a product.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

extern "C" {
    // Declared again to call the host with deliberately bad pointers.
    fn proxy_log(level: u32, ptr: *const u8, len: usize) -> u32;
    fn proxy_set_buffer_bytes(
        buffer: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_len: usize,
    ) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_len: usize,
        args: *const u8,
        args_len: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
}

#[derive(Default, Clone, Copy)]
struct Metrics {
    requests: u32,
    inflight: u32,
    sizes: u32,
    ticks: u32,
}

#[derive(Default)]
struct Root {
    config: String,
    metrics: Metrics,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        let m = &mut self.metrics;
        m.requests = hostcalls::define_metric(MetricType::Counter, "probe.requests").unwrap_or(0);
        m.inflight = hostcalls::define_metric(MetricType::Gauge, "probe.inflight").unwrap_or(0);
        m.sizes = hostcalls::define_metric(MetricType::Histogram, "probe.body_size").unwrap_or(0);
        m.ticks = hostcalls::define_metric(MetricType::Counter, "probe.ticks").unwrap_or(0);
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self
            .get_plugin_configuration()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        proxy_wasm::hostcalls::log(LogLevel::Info, &format!("configured with {config:?}")).ok();
        if config == "reject" {
            proxy_wasm::hostcalls::log(LogLevel::Critical, "probe: bad configuration").ok();
            return false;
        }
        if config == "tick" {
            self.set_tick_period(Duration::from_millis(1000));
        }
        if config == "queue" {
            let id = hostcalls::register_shared_queue("q");
            log(&format!("registered queue {id:?}"));
        }
        self.config = config;
        true
    }

    fn on_tick(&mut self) {
        let _ = hostcalls::increment_metric(self.metrics.ticks, 1);
        let now = self
            .get_current_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        proxy_wasm::hostcalls::log(LogLevel::Debug, &format!("tick at {now}")).ok();
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(item)) = hostcalls::dequeue_shared_queue(queue_id) {
            log(&format!("dequeued {}", String::from_utf8_lossy(&item)));
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            mode: String::new(),
            metrics: self.metrics,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    mode: String,
    metrics: Metrics,
}

fn log(msg: &str) {
    let _ = hostcalls::log(LogLevel::Info, msg);
}

impl Context for Probe {
    fn on_done(&mut self) -> bool {
        let _ = hostcalls::increment_metric(self.metrics.inflight, -1);
        true
    }

    fn on_http_call_response(&mut self, token: u32, nh: usize, body_size: usize, _nt: usize) {
        if nh == 0 {
            // A failed call has no response map: Envoy answers BAD_ARGUMENT
            // to reads, which the SDK turns into a panic. Do not read it.
            log(&format!("call {token} failed"));
            self.send_http_response(401, vec![], Some(b"auth failed"));
            return;
        }
        let status = self.get_http_call_response_header(":status");
        let body = self
            .get_http_call_response_body(0, body_size)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        log(&format!("call {token} answered {status:?} {body:?}"));
        if status.as_deref() == Some("200") {
            self.add_http_request_header("x-auth", &body);
            self.resume_http_request();
        } else {
            self.send_http_response(401, vec![], Some(b"auth failed"));
        }
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let _ = hostcalls::increment_metric(self.metrics.requests, 1);
        let _ = hostcalls::increment_metric(self.metrics.inflight, 1);
        self.mode = self.get_http_request_header("x-probe").unwrap_or_default();
        match self.mode.as_str() {
            "mutate" => {
                self.add_http_request_header("x-added", "1");
                self.set_http_request_header("x-replace", Some("new"));
                self.set_http_request_header("x-remove", None);
                self.set_http_request_header(":path", Some("/rewritten"));
                Action::Continue
            }
            "buffer-range" => {
                self.set_http_request_header("content-length", None);
                Action::Continue
            }
            "rewrite-body" | "rewrite-body-keep-cl" | "accumulate" => {
                if self.mode == "rewrite-body" {
                    self.set_http_request_header("content-length", None);
                }
                Action::Continue
            }
            "local-reply" => {
                self.send_http_response(
                    403,
                    vec![("x-reason", "probe"), ("content-type", "text/x-probe")],
                    Some(b"denied"),
                );
                Action::Pause
            }
            "props" => {
                for path in [
                    "xds.route_name",
                    "plugin_name",
                    "plugin_root_id",
                    "plugin_vm_id",
                    "source.address",
                    "request.path",
                    "request.url_path",
                    "request.method",
                    "upstream.address",
                ] {
                    let v = self
                        .get_property(path.split('.').collect())
                        .map(|b| String::from_utf8_lossy(&b).into_owned());
                    log(&format!("prop {path}={v:?}"));
                }
                let mtls = self.get_property(vec!["connection", "mtls"]);
                log(&format!("prop connection.mtls={mtls:?}"));
                self.set_property(vec!["probe_state"], Some(b"seen"));
                let back = self
                    .get_property(vec!["probe_state"])
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                log(&format!("prop probe_state={back:?}"));
                Action::Continue
            }
            "shared-get" => {
                let (v, cas) = self.get_shared_data("k");
                let v = v.map(|b| String::from_utf8_lossy(&b).into_owned());
                log(&format!("shared get value={v:?} cas={cas:?}"));
                Action::Continue
            }
            "shared-set" => {
                let value = self.get_http_request_header("x-value").unwrap_or_default();
                let cas = self
                    .get_http_request_header("x-cas")
                    .and_then(|c| c.parse::<u32>().ok());
                let r = self.set_shared_data("k", Some(value.as_bytes()), cas);
                log(&format!("shared set {value} cas={cas:?} -> {r:?}"));
                Action::Continue
            }
            "enqueue" => {
                let item = self.get_http_request_header("x-value").unwrap_or_default();
                let r = hostcalls::resolve_shared_queue("shared", "q")
                    .and_then(|q| q.ok_or(Status::NotFound))
                    .and_then(|q| hostcalls::enqueue_shared_queue(q, Some(item.as_bytes())));
                log(&format!("enqueue -> {r:?}"));
                Action::Continue
            }
            "metrics" => {
                let _ = hostcalls::record_metric(self.metrics.sizes, 42);
                let n = hostcalls::get_metric(self.metrics.requests);
                let h = hostcalls::get_metric(self.metrics.sizes);
                log(&format!("metric requests={n:?} histogram-read={h:?}"));
                Action::Continue
            }
            "http-call" => {
                let r = self.dispatch_http_call(
                    "auth",
                    vec![
                        (":method", "POST"),
                        (":path", "/check"),
                        (":authority", "auth"),
                    ],
                    Some(b"who?"),
                    vec![],
                    Duration::from_secs(1),
                );
                log(&format!("dispatch -> {r:?}"));
                match r {
                    Ok(_) => Action::Pause,
                    Err(_) => {
                        self.send_http_response(500, vec![], Some(b"no auth cluster"));
                        Action::Pause
                    }
                }
            }
            "env" => {
                let v = std::env::var("PROBE_SECRET");
                let len = v.as_ref().map(|s| s.len()).unwrap_or(0);
                self.add_http_request_header("x-env-len", &len.to_string());
                log(&format!("env PROBE_SECRET present={}", v.is_ok()));
                Action::Continue
            }
            "time" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                log(&format!("wasi time {now}"));
                let mut h = std::collections::HashMap::new();
                h.insert(1, 2);
                Action::Continue
            }
            "panic" => panic!("probe panic"),
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            "bad-pointers" => {
                let s1 = unsafe { proxy_log(2, 0xffff_fff0usize as *const u8, 64) };
                let mut p: *mut u8 = std::ptr::null_mut();
                let mut l: usize = 0;
                let key = b":path";
                let s2 = unsafe {
                    proxy_get_header_map_value(
                        0,
                        key.as_ptr(),
                        key.len(),
                        0xffff_fff0usize as *mut *mut u8,
                        &mut l,
                    )
                };
                let s3 = unsafe {
                    proxy_get_header_map_value(0, key.as_ptr(), key.len(), &mut p, &mut l)
                };
                log(&format!("bad pointers -> {s1} {s2} ok={s3}"));
                Action::Continue
            }
            "late-header" => Action::Continue,
            "unimplemented" => {
                let name = b"compress";
                let mut p: *mut u8 = std::ptr::null_mut();
                let mut l: usize = 0;
                let status = unsafe {
                    proxy_call_foreign_function(
                        name.as_ptr(),
                        name.len(),
                        name.as_ptr(),
                        0,
                        &mut p,
                        &mut l,
                    )
                };
                let fs = std::fs::read("/etc/hostname").map_err(|e| e.kind());
                log(&format!("foreign function -> {status}; fs -> {fs:?}"));
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, eos: bool) -> Action {
        log(&format!("request body_size={body_size} eos={eos}"));
        let _ = hostcalls::record_metric(self.metrics.sizes, body_size as u64);
        match self.mode.as_str() {
            "rewrite-body" | "rewrite-body-keep-cl" | "accumulate" => {
                if !eos {
                    return Action::Pause;
                }
                if self.mode != "accumulate" {
                    let body = self.get_http_request_body(0, body_size).unwrap_or_default();
                    let mut out = b"REWRITTEN:".to_vec();
                    out.extend(body.to_ascii_uppercase());
                    self.set_http_request_body(0, body_size, &out);
                }
                Action::Continue
            }
            "buffer-range" => {
                if !eos {
                    return Action::Pause;
                }
                // Which ranges may a filter replace? Prepend, middle, append.
                let set = |start: usize, size: usize, data: &[u8]| unsafe {
                    proxy_set_buffer_bytes(0, start, size, data.as_ptr(), data.len())
                };
                let prepend = set(0, 0, b"<");
                let middle = set(1, 1, b"?");
                let append = set(body_size + 1, 0, b">");
                log(&format!(
                    "buffer prepend={prepend} middle={middle} append={append}"
                ));
                Action::Continue
            }
            "late-header" => {
                // Envoy already let the headers go: the map is gone. Called
                // raw because the SDK panics on the status Envoy returns.
                let key = b":path";
                let mut p: *mut u8 = std::ptr::null_mut();
                let mut l: usize = 0;
                let status = unsafe {
                    proxy_get_header_map_value(0, key.as_ptr(), key.len(), &mut p, &mut l)
                };
                log(&format!("late read :path status={status}"));
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.mode == "props" {
            let code = self
                .get_property(vec!["response", "code"])
                .map(|b| b.to_vec());
            log(&format!("prop response.code={code:?}"));
        }
        if self.mode == "rewrite-response" {
            self.set_http_response_header("content-length", None);
        }
        self.set_http_response_header("x-probe-saw", Some(&self.mode.clone()));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, eos: bool) -> Action {
        log(&format!("response body_size={body_size} eos={eos}"));
        if self.mode == "rewrite-response" {
            if !eos {
                return Action::Pause;
            }
            self.set_http_response_body(0, body_size, b"{\"rewritten\":true}");
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let status = self.get_http_response_header(":status");
        log(&format!("on_log status={status:?}"));
    }
}
