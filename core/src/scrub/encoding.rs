//! Percent-encoding as URLs and form bodies use it.

/// Decodes `%XX` escapes (either case); with `plus_is_space`, `+` becomes a
/// space as in `application/x-www-form-urlencoded` query strings. Invalid
/// escapes stay as they are; invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|h| (*h as char).to_digit(16));
        match c {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(c),
            },
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes repeatedly (up to `rounds`) until the text stops changing, so a
/// value encoded twice (`%2540` for `@`) is still seen as what it is.
pub fn decode_fully(text: &str, plus_is_space: bool, rounds: usize) -> String {
    let mut cur = percent_decode(text, plus_is_space);
    for _ in 1..rounds {
        if !cur.contains('%') {
            break;
        }
        let next = percent_decode(&cur, false);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// Encodes everything but unreserved characters and the few that make
/// scrubbed output readable (`:` of pseudonyms, `[]` of placeholders).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &c in text.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b':' | b'[' | b']')
        {
            out.push(c as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_cases_plus_and_twice() {
        assert_eq!(percent_decode("a%40b%2ec+d", true), "a@b.c d");
        assert_eq!(percent_decode("a+b%4", false), "a+b%4");
        assert_eq!(decode_fully("a%2540b", false, 3), "a@b");
    }

    #[test]
    fn encode_round_trips() {
        let t = "a b/é@[x]:1";
        assert_eq!(percent_decode(&percent_encode(t), false), t);
    }
}
