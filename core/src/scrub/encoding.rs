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
    // An escape ending in a decimal digit (`%20`) would glue to digits that
    // follow it: ` 371449635963539` logged as `%20371449635963539` reads,
    // undecoded, as a 17-digit number that passes the Luhn check, a card
    // that was never in the input. Digits right after such an escape are
    // escaped too, so no digit run forms across an escape; so are the
    // number separators `.` and `-` (`%36.14496300` reads as the phone
    // `36.14496300`), whose escapes `%2E` and `%2D` end the chain.
    let mut after_digit_escape = false;
    for &c in text.as_bytes() {
        let plain = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b':' | b'[' | b']');
        let continues_a_number = c.is_ascii_digit() || matches!(c, b'.' | b'-');
        if plain && !(after_digit_escape && continues_a_number) {
            out.push(c as char);
            after_digit_escape = false;
        } else {
            let low = b"0123456789ABCDEF"[usize::from(c & 15)];
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c >> 4)]));
            out.push(char::from(low));
            after_digit_escape = low.is_ascii_digit();
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
    fn no_digit_run_forms_across_an_escape() {
        let encoded = percent_encode("0004 371449635963539+4");
        assert_eq!(
            encoded,
            "0004%20%33%37%31%34%34%39%36%33%35%39%36%33%35%33%39%2B4"
        );
        assert!(!encoded.contains("20371"), "{encoded}");
        assert_eq!(percent_decode(&encoded, false), "0004 371449635963539+4");
        // A letter after the escape stays as it is.
        assert_eq!(percent_encode("a b"), "a%20b");
        // Nor does a separator carry a number on (fuzz target `scrub`):
        // `%36.14496300` would read as the phone `36.14496300`.
        let encoded = percent_encode(" 6.14496300 7-2065550142");
        assert_eq!(encoded, "%20%36%2E14496300%20%37%2D2065550142");
        assert_eq!(percent_decode(&encoded, false), " 6.14496300 7-2065550142");
        assert!(
            crate::scrub::detect::detect(&encoded).is_empty(),
            "{encoded}"
        );
    }

    #[test]
    fn encode_round_trips() {
        let t = "a b/é@[x]:1";
        assert_eq!(percent_decode(&percent_encode(t), false), t);
    }
}
