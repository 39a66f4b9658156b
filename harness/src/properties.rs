//! Properties (Envoy "attributes") with Envoy's names and encodings.

use std::collections::BTreeMap;

/// A property value, encoded for the module as Envoy encodes it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// `response.code`, `upstream.request_attempt_count`, ...: 8-byte little-endian.
    Int(i64),
    /// `connection.mtls`: one byte.
    Bool(bool),
    /// Addresses, names, TLS versions: raw UTF-8.
    Str(String),
    /// A list (a JWT claim array in dynamic metadata): Envoy hands a CEL
    /// list over as a proxy-wasm pairs map, elements as keys, values empty.
    List(Vec<String>),
    /// Anything already encoded (e.g. serialized protobuf).
    #[serde(skip)]
    Bytes(Vec<u8>),
}

impl Value {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Value::Int(i) => i.to_le_bytes().to_vec(),
            Value::Bool(b) => vec![u8::from(*b)],
            Value::Str(s) => s.as_bytes().to_vec(),
            Value::List(items) => {
                let mut out = (items.len() as u32).to_le_bytes().to_vec();
                for i in items {
                    out.extend_from_slice(&(i.len() as u32).to_le_bytes());
                    out.extend_from_slice(&0u32.to_le_bytes());
                }
                for i in items {
                    out.extend_from_slice(i.as_bytes());
                    out.extend_from_slice(&[0, 0]);
                }
                out
            }
            Value::Bytes(b) => b.clone(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// Properties keyed by path segments (`["xds", "route_name"]`).
#[derive(Debug, Clone, Default)]
pub struct Properties {
    map: BTreeMap<Vec<String>, Value>,
}

/// Splits `a.b.c` into segments. Use [`Properties::set_path`] for segments
/// that themselves contain dots.
pub fn split_dotted(path: &str) -> Vec<String> {
    path.split('.').map(str::to_string).collect()
}

impl Properties {
    /// Sets a property by its dotted name, e.g. `xds.route_name`.
    pub fn set(&mut self, dotted: &str, value: impl Into<Value>) -> &mut Self {
        self.map.insert(split_dotted(dotted), value.into());
        self
    }

    pub fn set_path(&mut self, path: &[&str], value: impl Into<Value>) -> &mut Self {
        self.map
            .insert(path.iter().map(|s| s.to_string()).collect(), value.into());
        self
    }

    /// The value at `path`; a path whose segments contain dots (dynamic
    /// metadata of `envoy.filters.http.jwt_authn`) is also found under its
    /// dotted name, as scenario files write it.
    pub fn get(&self, path: &[String]) -> Option<&Value> {
        self.map.get(path).or_else(|| {
            let dotted = path.join(".");
            self.map
                .iter()
                .find(|(k, _)| k.join(".") == dotted)
                .map(|(_, v)| v)
        })
    }

    pub fn remove(&mut self, dotted: &str) {
        self.map.remove(&split_dotted(dotted));
    }

    pub fn extend(&mut self, other: &Properties) {
        for (k, v) in &other.map {
            self.map.insert(k.clone(), v.clone());
        }
    }
}
