//! Claim values as a Wasm filter receives them from Envoy's
//! `get_property`: a string claim as its UTF-8 bytes; an array claim as a
//! proxy-wasm pairs map whose keys are the elements (Envoy serialises a
//! CEL list that way; docs/access.md has the measurement).

/// The string values of a claim: one for a string, the elements of an
/// array of strings. Anything else (a number, an object, bytes that are
/// neither) yields nothing: no principal or role is made up from it.
pub fn claim_values(bytes: &[u8]) -> Vec<String> {
    if let Some(list) = decode_pairs(bytes) {
        return list.into_iter().filter(|s| !s.trim().is_empty()).collect();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.trim().is_empty() && !s.contains('\0') => vec![s.to_owned()],
        _ => Vec::new(),
    }
}

/// Roles carried by claim `name`: `scope` and `scp` are space-separated
/// lists (OAuth 2.0, RFC 8693); any other string claim is one role.
pub fn roles_from_claim(name: &str, values: Vec<String>) -> Vec<String> {
    let split = matches!(name, "scope" | "scp");
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let parts: Vec<&str> = match split {
            true => v.split_whitespace().collect(),
            false => vec![v.trim()],
        };
        for p in parts {
            if !p.is_empty() && !out.iter().any(|o| o == p) {
                out.push(p.to_owned());
            }
        }
    }
    out
}

/// Strict proxy-wasm pairs decoding: `u32 count`, `count` pairs of
/// `(u32 key_len, u32 value_len)`, then each key and value followed by a
/// NUL, and nothing after. Returns the keys.
fn decode_pairs(bytes: &[u8]) -> Option<Vec<String>> {
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = word(0)?;
    if count == 0 || count > bytes.len() / 8 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let at = 4 + i * 8;
        sizes.push((word(at)?, word(at + 4)?));
    }
    let mut at = 4 + count * 8;
    let mut keys = Vec::with_capacity(count);
    for (k, v) in sizes {
        let key = bytes.get(at..at.checked_add(k)?)?;
        at = at.checked_add(k)?;
        if bytes.get(at) != Some(&0) {
            return None;
        }
        at = at.checked_add(1)?.checked_add(v)?;
        if bytes.get(at) != Some(&0) {
            return None;
        }
        at += 1;
        keys.push(String::from_utf8(key.to_vec()).ok()?);
    }
    (at == bytes.len()).then_some(keys)
}

/// Encodes a list the way Envoy hands one over (tests and the harness).
pub fn encode_list(items: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for i in items {
        out.extend_from_slice(&(i.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    for i in items {
        out.extend_from_slice(i.as_bytes());
        out.push(0);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_lists() {
        assert_eq!(claim_values(b"alice"), vec!["alice"]);
        assert_eq!(claim_values(&encode_list(&["a", "b"])), vec!["a", "b"]);
        assert!(claim_values(b"").is_empty());
        assert!(claim_values(&[0xff, 0xfe]).is_empty());
        assert!(claim_values(&1.5f64.to_le_bytes()).is_empty());
        // A truncated list is not read as a string either.
        let mut bad = encode_list(&["a", "b"]);
        bad.pop();
        assert!(claim_values(&bad).is_empty());
    }

    #[test]
    fn scopes_split_on_spaces_other_claims_do_not() {
        assert_eq!(
            roles_from_claim("scope", vec!["pii:read  orders:write".into()]),
            vec!["pii:read", "orders:write"]
        );
        assert_eq!(
            roles_from_claim("roles", vec!["support agent".into()]),
            vec!["support agent"]
        );
        assert_eq!(
            roles_from_claim("roles", vec!["a".into(), "b".into(), "a".into()]),
            vec!["a", "b"]
        );
    }
}
