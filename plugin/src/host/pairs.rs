//! The proxy-wasm header-map encoding: a u32 count, a (u32 name length,
//! u32 value length) per pair, then each name and value followed by NUL.
//! A fetched map is looked up in place: no per-header allocation.

/// A header map fetched in one host call.
#[derive(Debug)]
pub struct Pairs {
    bytes: Vec<u8>,
    count: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
}

impl Pairs {
    /// Checks the encoding once; `None` if it is not well formed.
    pub fn parse(bytes: Vec<u8>) -> Option<Pairs> {
        if bytes.is_empty() {
            return Some(Pairs { bytes, count: 0 });
        }
        let count = u32_at(&bytes, 0)?;
        let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
        for i in 0..count {
            let k = u32_at(&bytes, 4 + 8 * i)?;
            let v = u32_at(&bytes, 8 + 8 * i)?;
            data = data.checked_add(k)?.checked_add(v)?.checked_add(2)?;
        }
        (data <= bytes.len()).then_some(Pairs { bytes, count })
    }

    /// The first value of `name` (header names arrive lower-case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let mut data = 4 + 8 * self.count;
        for i in 0..self.count {
            let k = u32_at(&self.bytes, 4 + 8 * i)?;
            let v = u32_at(&self.bytes, 8 + 8 * i)?;
            let key = self.bytes.get(data..data + k)?;
            let value_at = data + k + 1;
            if key.eq_ignore_ascii_case(name.as_bytes()) {
                return self.bytes.get(value_at..value_at + v);
            }
            data = value_at + v + 1;
        }
        None
    }
}

/// Encodes pairs for `proxy_send_local_response`.
pub fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let bytes = serialize(&[(":path", "/a"), ("x-b", ""), ("x-b", "second"), ("c", "3")]);
        let p = Pairs::parse(bytes).unwrap();
        assert_eq!(p.get(":path"), Some(&b"/a"[..]));
        assert_eq!(p.get("x-b"), Some(&b""[..]), "first value");
        assert_eq!(p.get("C"), Some(&b"3"[..]));
        assert_eq!(p.get("missing"), None);
        assert_eq!(Pairs::parse(Vec::new()).unwrap().get("a"), None);
    }

    #[test]
    fn truncated_maps_are_refused() {
        let bytes = serialize(&[("name", "value")]);
        for n in 1..bytes.len() {
            assert!(Pairs::parse(bytes[..n].to_vec()).is_none(), "{n}");
        }
        let mut huge = bytes.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Pairs::parse(huge).is_none());
    }
}
