//! dpp-guard in Node and the browser: `#[wasm_bindgen]` exports over
//! `dpp-guard-core`, with no logic of their own.
//!
//! Every function here hands its arguments to the same core code the Envoy
//! filter and the CLI run (policy parsing, the keyring, envelopes, the
//! splice rewrite, the scrubbed access record) and hands the result back.
//! Results cross the boundary as JSON text (`{"ok":true,...}` or
//! `{"ok":false,"error":{...}}`); the package's ESM wrapper
//! (`web/package/index.js`) turns them into objects and typed errors.
//!
//! Keys: only ever passed in by the caller. Strings the caller passes are
//! moved into Rust and wiped there after parsing; a `Uint8Array` passed to
//! `Keyring.fromBytes` is wiped in place (JS strings themselves cannot be
//! wiped). Parsed keys are wiped when the `Keyring` is freed.
//!
//! The functions with the logic-free bodies live in [`api`] so they are
//! tested natively (`cargo test -p dpp-guard-web`); this file only adapts
//! them to wasm-bindgen.

pub mod api;
pub mod rfc8452;
pub mod simulate;

use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

/// A parsed keyring (`primary=k2 k1=<base64url> k2=<base64url>`, the text
/// `dpp-guard keygen` prints). Free it (`free()`) when done: the key
/// material is wiped then.
#[wasm_bindgen]
pub struct Keyring {
    inner: dpp_core::crypto::Keyring,
}

#[wasm_bindgen]
impl Keyring {
    /// Parses the keyring text. The copy in wasm memory is wiped after
    /// parsing; errors never contain key text.
    #[wasm_bindgen(constructor)]
    pub fn new(text: String) -> Result<Keyring, JsError> {
        let text = Zeroizing::new(text);
        api::parse_keyring(&text)
            .map(|inner| Keyring { inner })
            .map_err(|e| JsError::new(&e))
    }

    /// Parses the keyring from UTF-8 bytes and wipes them, in wasm memory
    /// and in the caller's `Uint8Array`.
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: &mut [u8]) -> Result<Keyring, JsError> {
        api::parse_keyring_bytes(bytes)
            .map(|inner| Keyring { inner })
            .map_err(|e| JsError::new(&e))
    }

    /// Key ids, in keyring order.
    pub fn ids(&self) -> Vec<String> {
        self.inner.ids().map(|id| id.as_str().to_string()).collect()
    }

    /// The id of the key new envelopes are sealed with.
    pub fn primary(&self) -> String {
        self.inner.primary().id().as_str().to_string()
    }
}

/// A compiled policy. `Policy.parse` throws on an invalid one; use
/// [`check_policy`] for the structured error.
#[wasm_bindgen]
pub struct Policy {
    inner: dpp_core::Policy,
}

#[wasm_bindgen]
impl Policy {
    /// Parses and checks a policy document, exactly as the filter does.
    pub fn parse(json: &str) -> Result<Policy, JsError> {
        dpp_core::Policy::from_json(json.as_bytes())
            .map(|inner| Policy { inner })
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// Routes and what they do, as JSON.
    pub fn summary(&self) -> String {
        to_json(&api::summary(&self.inner))
    }

    /// Runs a route's field rules for one direction on a body: the filter's
    /// splice rewrite. `action` (`encrypt`/`decrypt`, optional) runs the
    /// same fields with the other action, as `dpp-guard encrypt/decrypt`
    /// does. JSON result.
    pub fn protect(
        &self,
        keyring: &Keyring,
        route: &str,
        direction: &str,
        action: Option<String>,
        body: &[u8],
    ) -> String {
        to_json(&api::protect(
            &self.inner,
            &keyring.inner,
            route,
            direction,
            action.as_deref(),
            body,
        ))
    }

    /// One sample exchange under the policy: the route decision, the body
    /// rewrite, the events and the access record as the filter would log
    /// it. `sample` is JSON (see `simulate::Sample`); `log_key` (optional)
    /// gives pseudonyms and the MAC chain. JSON result.
    pub fn simulate(&self, sample: &str, keyring: &Keyring, log_key: Option<String>) -> String {
        self.simulate_with(sample, Some(&keyring.inner), log_key)
    }

    /// [`Policy::simulate`] without a keyring: a route with field rules
    /// then fails closed, as the filter does.
    #[wasm_bindgen(js_name = simulateWithoutKeys)]
    pub fn simulate_without_keys(&self, sample: &str, log_key: Option<String>) -> String {
        self.simulate_with(sample, None, log_key)
    }
}

impl Policy {
    fn simulate_with(
        &self,
        sample: &str,
        keyring: Option<&dpp_core::crypto::Keyring>,
        log_key: Option<String>,
    ) -> String {
        let log_key = log_key.map(Zeroizing::new);
        to_json(&simulate::run(
            &self.inner,
            sample,
            keyring,
            log_key.as_ref().map(|k| k.as_str()),
        ))
    }
}

/// Checks a policy: `{"ok":true,...summary}` or `{"ok":false,"error":{
/// "field","problem","message"}}`, `message` being the very line the plugin
/// logs when it refuses the policy.
#[wasm_bindgen(js_name = checkPolicy)]
pub fn check_policy(json: &str) -> String {
    to_json(&api::check_policy(json))
}

/// A fresh keyring entry `ID=<256-bit key, base64url>` from the platform's
/// random source (crypto.getRandomValues), as `dpp-guard keygen ID` prints.
/// The entry is copied into a JS string and its wasm copy wiped.
#[wasm_bindgen(js_name = generateKeyEntry)]
pub fn generate_key_entry(id: &str) -> Result<JsValue, JsError> {
    let entry = api::generate_key_entry(id).map_err(|e| JsError::new(&e))?;
    Ok(JsValue::from_str(&entry))
}

/// A fresh log key (base64, 32 bytes): pseudonyms and the access-record
/// MAC chain. Its wasm copy is wiped.
#[wasm_bindgen(js_name = generateLogKey)]
pub fn generate_log_key() -> Result<JsValue, JsError> {
    let key = api::generate_log_key().map_err(|e| JsError::new(&e))?;
    Ok(JsValue::from_str(&key))
}

/// Seals one JSON value found at `path` into an envelope. `options` is
/// JSON: `{"direction":"request"|"response","context":"...","bound":[[name,
/// json],...],"mode":"random"|"deterministic","blind_index":bool}`.
#[wasm_bindgen(js_name = sealValue)]
pub fn seal_value(keyring: &Keyring, path: &str, value: &[u8], options: &str) -> String {
    to_json(&api::seal_value(&keyring.inner, path, value, options))
}

/// Opens one envelope found at `path`: the original JSON value's text.
/// `options`: `{"direction","context","bound"}` as for [`seal_value`].
#[wasm_bindgen(js_name = openEnvelope)]
pub fn open_envelope(keyring: &Keyring, path: &str, envelope: &str, options: &str) -> String {
    to_json(&api::open_envelope(&keyring.inner, path, envelope, options))
}

/// AEAD_AES_256_GCM_SIV (RFC 8452) encryption with the cipher the keyring
/// uses, for known-answer tests in the JS runtime. Returns ciphertext ||
/// tag. The key bytes are wiped.
#[wasm_bindgen(js_name = aes256GcmSivEncrypt)]
pub fn aes256_gcm_siv_encrypt(
    key: &mut [u8],
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, JsError> {
    rfc8452::encrypt(key, nonce, aad, plaintext).map_err(JsError::new)
}

/// The inverse of [`aes256_gcm_siv_encrypt`]; throws when authentication fails.
#[wasm_bindgen(js_name = aes256GcmSivDecrypt)]
pub fn aes256_gcm_siv_decrypt(
    key: &mut [u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, JsError> {
    rfc8452::decrypt(key, nonce, aad, ciphertext).map_err(JsError::new)
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising these plain structs cannot fail; an empty object would
    // make the wrapper report a protocol error rather than a wrong result.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string())
}
