//! Benchmark reference (d): the naive field encryptor.
//!
//! Reference (c) (buffer, parse into `serde_json::Value`, serialize) plus
//! AES-256-GCM-SIV on each selected string field, done the obvious way:
//! a fresh cipher (full AES key schedule) and a fresh random nonce per
//! field, the envelope being `base64(nonce || ciphertext || tag)`.
//!
//! Configuration (plugin configuration, JSON): `{"fields": ["a.b", "items.*.c"]}`
//! where `*` walks every element of an array. The 32-byte key comes hex-encoded
//! from the environment variable `BENCH_NAIVE_KEY` (Envoy `host_env_keys`).
//! This is a yardstick, not a product: no zeroization, no key ids.

use std::rc::Rc;

use aes_gcm_siv::aead::{Aead, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64ct::{Base64, Encoding};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde_json::Value;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NaiveRoot { conf: None }) });
}}

struct Conf {
    key: [u8; 32],
    fields: Vec<Vec<String>>,
}

struct NaiveRoot {
    conf: Option<Rc<Conf>>,
}

impl Context for NaiveRoot {}

impl RootContext for NaiveRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let fields = serde_json::from_slice::<Value>(&raw)
            .ok()
            .and_then(|v| v.get("fields").cloned())
            .and_then(|f| serde_json::from_value::<Vec<String>>(f).ok());
        let key = std::env::var("BENCH_NAIVE_KEY")
            .ok()
            .and_then(|h| hex32(&h));
        match (fields, key) {
            (Some(fields), Some(key)) => {
                let fields = fields
                    .iter()
                    .map(|f| f.split('.').map(str::to_string).collect())
                    .collect();
                self.conf = Some(Rc::new(Conf { key, fields }));
                true
            }
            _ => {
                let _ = proxy_wasm::hostcalls::log(
                    LogLevel::Critical,
                    "naive-crypto: need configuration {\"fields\":[...]} and BENCH_NAIVE_KEY (64 hex)",
                );
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NaiveCrypto {
            conf: self.conf.clone()?,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct NaiveCrypto {
    conf: Rc<Conf>,
}

impl Context for NaiveCrypto {}

impl HttpContext for NaiveCrypto {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_request_header("content-length", None);
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(body) = self.get_http_request_body(0, body_size) else {
            return Action::Continue;
        };
        let out = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|mut v| {
                for path in &self.conf.fields {
                    encrypt_at(&mut v, path, &self.conf.key).ok()?;
                }
                serde_json::to_vec(&v).ok()
            });
        match out {
            Some(out) => {
                self.set_http_request_body(0, body_size, &out);
                Action::Continue
            }
            None => {
                self.send_http_response(400, vec![], Some(b"{\"error\":\"cannot encrypt\"}"));
                Action::Pause
            }
        }
    }
}

fn encrypt_at(v: &mut Value, path: &[String], key: &[u8; 32]) -> Result<(), ()> {
    let Some((head, rest)) = path.split_first() else {
        if let Value::String(s) = v {
            *s = seal(key, s.as_bytes())?;
        }
        return Ok(());
    };
    match v {
        Value::Array(items) if head == "*" => {
            for item in items {
                encrypt_at(item, rest, key)?;
            }
            Ok(())
        }
        Value::Object(map) => match map.get_mut(head.as_str()) {
            Some(child) => encrypt_at(child, rest, key),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The naive part: a new cipher (key schedule) for every single field.
fn seal(key: &[u8; 32], plaintext: &[u8]) -> Result<String, ()> {
    let cipher = Aes256GcmSiv::new_from_slice(key).map_err(|_| ())?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| ())?;
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .map_err(|_| ())?;
    let mut out = Vec::with_capacity(12 + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(Base64::encode_string(&out))
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (*pair.first()? as char).to_digit(16)?;
        let lo = (*pair.get(1)? as char).to_digit(16)?;
        *out.get_mut(i)? = (hi * 16 + lo) as u8;
    }
    Some(out)
}
