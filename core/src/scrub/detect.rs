//! Hand-written detectors for PII inside decoded text.
//!
//! Each detector is a single linear scan over bytes; all of them match only
//! ASCII (plus whole runs of non-ASCII bytes inside e-mail addresses), so a
//! span always starts and ends on a UTF-8 character boundary. Detectors run
//! in a fixed order (e-mail, MAC, IPv6, IPv4, card, phone) and a byte claimed by
//! one is invisible to the next, so spans never overlap.

use std::net::{Ipv4Addr, Ipv6Addr};

/// What a detected span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiKind {
    Email,
    Phone,
    /// A payment card number (Luhn-valid). Never pseudonymised, only redacted.
    Card,
    Ipv4,
    Ipv6,
    /// A hardware (MAC) address: an Internet-connected device identifier.
    Mac,
}

impl PiiKind {
    /// Placeholder used when no log key is configured.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[email]",
            PiiKind::Phone => "[phone]",
            PiiKind::Card => "[card]",
            PiiKind::Ipv4 | PiiKind::Ipv6 => "[ip]",
            PiiKind::Mac => "[device]",
        }
    }
}

/// A detected value: its kind, its byte span, and its normalised form (the
/// input of a pseudonym, so that spellings of one value meet on one token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
    pub normalized: String,
}

/// Byte that no detector matches; claimed spans are overwritten with it.
const CLAIMED: u8 = 0;

/// All PII spans in `text`, sorted by position, non-overlapping.
pub fn detect(text: &str) -> Vec<Detection> {
    detect_unclaimed(text, &[])
}

/// Like [`detect`], but the byte ranges in `claimed` (already handled by
/// the caller) are skipped and act as boundaries.
pub fn detect_unclaimed(text: &str, claimed: &[(usize, usize)]) -> Vec<Detection> {
    if !may_hold_pii(text) {
        return Vec::new();
    }
    let mut work = text.as_bytes().to_vec();
    for (s, e) in claimed {
        if let Some(span) = work.get_mut(*s..*e) {
            span.fill(CLAIMED);
        }
    }
    let mut found = Vec::new();
    // Until nothing new is found: a span claimed by a later detector is a
    // boundary that can complete an earlier one's match (`+49 30 1234567`
    // glued to `::ffff:cb00:7107` hides the address until the phone is
    // claimed). Claimed bytes never match again, so this ends.
    loop {
        let round = found.len();
        for scan in [emails, macs, ipv6s, ipv4s, cards, phones] {
            let start = found.len();
            scan(&work, &mut found);
            for d in &found[start..] {
                if let Some(span) = work.get_mut(d.start..d.end) {
                    span.fill(CLAIMED);
                }
            }
        }
        if found.len() == round {
            break;
        }
    }
    found.sort_by_key(|d| d.start);
    found
}

/// False only when no detector can match: every one needs an `@`, a `:`
/// or a digit, except a MAC address written with dashes and letters only
/// (`aa-bb-cc-dd-ee-ff`). Most path segments and header values take this
/// exit and skip the copy and the scans.
pub fn may_hold_pii(text: &str) -> bool {
    text.bytes()
        .any(|c| c == b'@' || c == b':' || c.is_ascii_digit())
        || (text.len() >= 17 && text.contains('-'))
}

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(CLAIMED)
}

fn before(b: &[u8], i: usize) -> u8 {
    i.checked_sub(1).map_or(CLAIMED, |j| at(b, j))
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-') || c >= 0x80
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-') || c >= 0x80
}

fn text_of(b: &[u8], s: usize, e: usize) -> String {
    String::from_utf8_lossy(b.get(s..e).unwrap_or_default()).into_owned()
}

/// `local@domain.tld`: local part of letters, digits and `._+-` (the
/// characters real addresses use; quoted local parts are not handled),
/// domain of labels with a final label of at least two letters.
fn emails(b: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i < b.len() {
        if at(b, i) != b'@' {
            i += 1;
            continue;
        }
        let mut l = i;
        while l > 0 && is_local(at(b, l - 1)) {
            l -= 1;
        }
        while l < i && at(b, l) == b'.' {
            l += 1;
        }
        let mut r = i + 1;
        while is_domain(at(b, r)) {
            r += 1;
        }
        while r > i + 1 && matches!(at(b, r - 1), b'.' | b'-') {
            r -= 1;
        }
        let domain = b.get(i + 1..r).unwrap_or_default();
        let labels: Vec<&[u8]> = domain.split(|c| *c == b'.').collect();
        let tld_ok = labels.last().is_some_and(|t| {
            t.len() >= 2 && t.iter().all(|c| c.is_ascii_alphabetic() || *c >= 0x80)
        });
        if l < i && labels.len() >= 2 && labels.iter().all(|x| !x.is_empty()) && tld_ok {
            out.push(Detection {
                kind: PiiKind::Email,
                start: l,
                end: r,
                normalized: text_of(b, l, r).to_lowercase(),
            });
            i = r;
        } else {
            i += 1;
        }
    }
}

/// MAC addresses: six pairs of hex digits joined by one kind of separator
/// (`:` or `-`), as `ip link` and Windows print them.
fn macs(b: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i + 17 <= b.len() {
        let p = before(b, i);
        let sep = at(b, i + 2);
        let shaped = !p.is_ascii_alphanumeric()
            && p != b':'
            && p != b'-'
            && matches!(sep, b':' | b'-')
            && (0..6).all(|g| {
                let s = i + 3 * g;
                at(b, s).is_ascii_hexdigit()
                    && at(b, s + 1).is_ascii_hexdigit()
                    && (g == 5 || at(b, s + 2) == sep)
            })
            && !at(b, i + 17).is_ascii_alphanumeric()
            && at(b, i + 17) != sep;
        if shaped {
            let normalized = text_of(b, i, i + 17).to_ascii_lowercase().replace('-', ":");
            out.push(Detection {
                kind: PiiKind::Mac,
                start: i,
                end: i + 17,
                normalized,
            });
            i += 17;
        } else {
            i += 1;
        }
    }
}

fn is_v6(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

/// Runs of hex digits, colons and dots with at least two colons that
/// `std::net::Ipv6Addr` accepts (covers `::`, embedded IPv4, full form).
fn ipv6s(b: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i < b.len() {
        let c = at(b, i);
        let p = before(b, i);
        // An address starts after a non-address byte, or right after the
        // colon of a label (`client:2001:db8::7`, `ip:::1`).
        let after_label = p == b':' && before(b, i.saturating_sub(1)).is_ascii_alphabetic();
        if !is_v6(c) || p.is_ascii_alphanumeric() || p == b'.' || (p == b':' && !after_label) {
            i += 1;
            continue;
        }
        let mut r = i;
        while is_v6(at(b, r)) {
            r += 1;
        }
        let mut end = r;
        // A trailing dot or single colon belongs to the sentence, not the address.
        while end > i && at(b, end - 1) == b'.' {
            end -= 1;
        }
        if at(b, r).is_ascii_alphanumeric() {
            i = r.max(i + 1);
            continue;
        }
        // The whole run, else (`face:2001:db8:0:0:0:0:0:1`, a hex label
        // glued on) the longest tail after one of its colons; then the
        // same for what is left in front of that tail, whose end is now a
        // boundary. Doing the rest of the run in this pass, not in a later
        // round of `detect_unclaimed`, keeps a run linear: a 60 kB run of
        // colons took one round per `::` found, 20 s natively.
        while end > i {
            let floor = earliest_v6_start(b, i, end);
            let first_tail = (i + 1).max(floor);
            let tails = (first_tail..end).filter(|&k| at(b, k - 1) == b':');
            let Some((start, addr)) = (i >= floor)
                .then_some(i)
                .into_iter()
                .chain(tails)
                .find_map(|k| Some((k, parse_v6(b.get(k..end)?)?)))
            else {
                break;
            };
            out.push(Detection {
                kind: PiiKind::Ipv6,
                start,
                end,
                normalized: addr.to_string(),
            });
            end = start;
        }
        i = r.max(i + 1);
    }
}

/// Longest text form of an IPv6 address (`ffff:...:255.255.255.255`).
const MAX_V6_TEXT: usize = 45;

/// The earliest start of a text ending at `end` (and not before `lo`) that
/// can still be an address: at most 45 bytes, one `::` at most and no
/// `:::`. Tails starting earlier fail `parse_v6` anyway; skipping them
/// keeps a run of colons at two parse attempts per address instead of 44
/// (a 60 kB run took 125 ms natively, most of it in failing parses).
fn earliest_v6_start(b: &[u8], lo: usize, end: usize) -> usize {
    let mut k = end;
    let mut compressions = 0;
    while k > lo && end - k < MAX_V6_TEXT {
        // Taking b[k - 1] in: does it open a `::` (or a `:::`)?
        if at(b, k - 1) == b':' && k < end && at(b, k) == b':' {
            if k + 1 < end && at(b, k + 1) == b':' {
                break;
            }
            compressions += 1;
            if compressions > 1 {
                break;
            }
        }
        k -= 1;
    }
    k
}

fn parse_v6(run: &[u8]) -> Option<Ipv6Addr> {
    // Length first: counting the colons of a long run is the quadratic part.
    if run.len() > MAX_V6_TEXT || run.iter().filter(|c| **c == b':').count() < 2 {
        return None;
    }
    std::str::from_utf8(run).ok()?.parse().ok()
}

/// Dotted quads with every octet 0-255, not part of a longer dotted number.
fn ipv4s(b: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i < b.len() {
        let p = before(b, i);
        if !at(b, i).is_ascii_digit() || p.is_ascii_alphanumeric() || p == b'.' {
            i += 1;
            continue;
        }
        let mut r = i;
        let mut octets = 0;
        let mut ok = true;
        while octets < 4 {
            let s = r;
            while at(b, r).is_ascii_digit() && r - s < 4 {
                r += 1;
            }
            let n = r - s;
            let val: u32 = std::str::from_utf8(b.get(s..r).unwrap_or_default())
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(u32::MAX);
            if n == 0 || n > 3 || val > 255 {
                ok = false;
                break;
            }
            octets += 1;
            if octets < 4 {
                if at(b, r) != b'.' {
                    ok = false;
                    break;
                }
                r += 1;
            }
        }
        let next = at(b, r);
        let tail_ok =
            !next.is_ascii_alphanumeric() && (next != b'.' || !at(b, r + 1).is_ascii_digit());
        let parsed = (ok && tail_ok)
            .then(|| {
                std::str::from_utf8(b.get(i..r)?)
                    .ok()?
                    .parse::<Ipv4Addr>()
                    .ok()
            })
            .flatten();
        match parsed {
            Some(addr) => {
                out.push(Detection {
                    kind: PiiKind::Ipv4,
                    start: i,
                    end: r,
                    normalized: addr.to_string(),
                });
                i = r;
            }
            // Later starts inside this digit run are refused by the
            // start condition (a digit before them).
            None => i += 1,
        }
    }
}

/// Luhn check over ASCII digits.
pub fn luhn_ok(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.saturating_sub(b'0'));
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn digit_run(b: &[u8], i: usize) -> usize {
    let mut r = i;
    while at(b, r).is_ascii_digit() {
        r += 1;
    }
    r
}

/// 13-19 digit Luhn-valid numbers, contiguous or grouped with one kind of
/// separator (space, dash or dot) in the layouts cards are printed in
/// (4-4-4-4[-1..3], 4-6-4, 4-6-5, 4-4-4-1..4).
fn cards(b: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i < b.len() {
        if !at(b, i).is_ascii_digit() || before(b, i).is_ascii_digit() {
            i += 1;
            continue;
        }
        let r = digit_run(b, i);
        let n = r - i;
        if (13..=19).contains(&n) && luhn_ok(b.get(i..r).unwrap_or_default()) {
            out.push(card(i, r, b.get(i..r).unwrap_or_default()));
            i = r;
            continue;
        }
        if n == 4 && matches!(at(b, r), b' ' | b'-' | b'.') {
            let sep = at(b, r);
            // Collect up to five groups separated by `sep`.
            let mut groups = vec![(i, r)];
            let mut e = r;
            while groups.len() < 5 && at(b, e) == sep && at(b, e + 1).is_ascii_digit() {
                let s = e + 1;
                let ge = digit_run(b, s);
                groups.push((s, ge));
                e = ge;
            }
            // Longest layout first.
            let mut hit = None;
            for k in (3..=groups.len()).rev() {
                let g = groups.get(..k).unwrap_or_default();
                let lens: Vec<usize> = g.iter().map(|(s, e)| e - s).collect();
                let total: usize = lens.iter().sum();
                let layout_ok = lens.first() == Some(&4)
                    && lens
                        .get(1..k - 1)
                        .unwrap_or_default()
                        .iter()
                        .all(|l| (4..=6).contains(l))
                    && lens.last().is_some_and(|l| (1..=6).contains(l));
                if !(layout_ok && (13..=19).contains(&total)) {
                    continue;
                }
                let digits: Vec<u8> = g
                    .iter()
                    .flat_map(|(s, e)| b.get(*s..*e).unwrap_or_default().iter().copied())
                    .collect();
                if luhn_ok(&digits) {
                    hit = Some((g.last().map_or(r, |x| x.1), digits));
                    break;
                }
            }
            if let Some((end, digits)) = hit {
                out.push(card(i, end, &digits));
                i = end;
                continue;
            }
        }
        i = r.max(i + 1);
    }
}

fn card(start: usize, end: usize, digits: &[u8]) -> Detection {
    Detection {
        kind: PiiKind::Card,
        start,
        end,
        normalized: String::from_utf8_lossy(digits).into_owned(),
    }
}

fn is_phone_sep(c: u8) -> bool {
    matches!(c, b' ' | b'-' | b'.' | b'(' | b')')
}

/// Phone numbers: 7-15 digits (E.164's maximum) after a `+` or `00`, or in
/// at least two groups whose last has four or more digits (`555-123-4567`,
/// `(555) 123 4567`, `030 1234567`, `1-555-123-4567`), or in three or more
/// groups of 2-5 digits under one separator with nine digits or more
/// (`06 12 34 56 78`, `030 123 45 67`, `07700 900 123`). Other bare digit
/// runs are not phones (they are mostly identifiers); values under a PII
/// key such as `Phone=` are caught by the key rule instead.
fn phones(b: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i < b.len() {
        let c = at(b, i);
        let p = before(b, i);
        let starts =
            c.is_ascii_digit() || ((c == b'+' || c == b'(') && at(b, i + 1).is_ascii_digit());
        if !starts || p.is_ascii_alphanumeric() || p == b'.' || p == b'+' {
            i += 1;
            continue;
        }
        let mut r = i + 1;
        let mut seps = 0;
        loop {
            let x = at(b, r);
            if x.is_ascii_digit() {
                seps = 0;
            } else if is_phone_sep(x) && seps < 2 {
                seps += 1;
            } else {
                break;
            }
            r += 1;
        }
        let mut end = r;
        while end > i && !at(b, end - 1).is_ascii_digit() {
            end -= 1;
        }
        // Digits glued to letters (`1234-5678-abcd`, a UUID's groups) are
        // part of an identifier, not a phone number.
        let glued = r == end || matches!(at(b, r - 1), b'-' | b'.');
        if glued && at(b, r).is_ascii_alphanumeric() {
            i = r.max(i + 1);
            continue;
        }
        let span = b.get(i..end).unwrap_or_default();
        let groups: Vec<&[u8]> = span
            .split(|x| !x.is_ascii_digit())
            .filter(|g| !g.is_empty())
            .collect();
        let digits: usize = groups.iter().map(|g| g.len()).sum();
        let plus = c == b'+';
        let first = groups.first().map_or(0, |g| g.len());
        // A one-digit first group is a country or trunk code (`1-555-...`),
        // written with a dash or space, not a dot (versions: `2.14.102.3456`).
        let lead_ok = first >= 2 || (first == 1 && matches!(at(b, i + 1), b'-' | b' '));
        // `555-123-4567`, `(555) 123 4567`, `030 1234567`, `1-555-123-4567`.
        let classic = groups.len() >= 2
            && lead_ok
            && groups.iter().skip(1).all(|g| g.len() >= 2)
            && groups.last().is_some_and(|g| g.len() >= 4);
        // European spacing: `06 12 34 56 78`, `06.12.34.56.78`,
        // `030 123 45 67`, `07700 900 123`: three or more groups of 2-5
        // digits under one separator, nine digits or more (dates have eight).
        let seps: Vec<u8> = span
            .iter()
            .copied()
            .filter(|x| !x.is_ascii_digit())
            .collect();
        let grouped = groups.len() >= 3
            && groups.iter().all(|g| (2..=5).contains(&g.len()))
            && seps.len() == groups.len() - 1
            && seps.windows(2).all(|w| w[0] == w[1])
            && seps
                .first()
                .is_some_and(|s| matches!(s, b' ' | b'-' | b'.'))
            && digits >= 9;
        // International prefix `00` then a country code: `00442079460958`.
        let intl = groups.len() == 1
            && span.starts_with(b"00")
            && span.get(2).is_some_and(|d| *d != b'0')
            && (11..=15).contains(&digits);
        if (7..=15).contains(&digits) && (plus || classic || grouped || intl) {
            let mut normalized = String::with_capacity(16);
            let all_digits = span.iter().filter(|x| x.is_ascii_digit());
            if plus || intl {
                // `00` and `+` spellings of one number meet on one pseudonym.
                normalized.push('+');
                normalized.extend(
                    all_digits
                        .skip(if intl { 2 } else { 0 })
                        .map(|x| *x as char),
                );
            } else {
                normalized.extend(all_digits.map(|x| *x as char));
            }
            out.push(Detection {
                kind: PiiKind::Phone,
                start: i,
                end,
                normalized,
            });
        }
        i = r.max(i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// `earliest_v6_start` only skips what cannot parse: every start
        /// below it fails `parse_v6`, so the run scan finds what trying
        /// every tail found.
        #[test]
        fn no_parseable_tail_starts_below_the_floor(
            text in "[:0-9a-f.]{1,60}",
            lo_frac in 0.0f64..1.0,
        ) {
            let b = text.as_bytes();
            let end = b.len();
            let lo = ((end as f64) * lo_frac) as usize;
            let floor = earliest_v6_start(b, lo, end);
            prop_assert!(lo <= floor && floor <= end);
            for k in lo..floor {
                prop_assert!(parse_v6(&b[k..end]).is_none(), "{:?} parses", &text[k..end]);
            }
        }
    }

    fn kinds(text: &str) -> Vec<(PiiKind, String)> {
        detect(text)
            .into_iter()
            .map(|d| (d.kind, text[d.start..d.end].to_string()))
            .collect()
    }

    #[test]
    fn finds_emails_and_keeps_neighbours() {
        assert_eq!(
            kinds("mail Jane.Doe+x@Example.co.uk, then"),
            vec![(PiiKind::Email, "Jane.Doe+x@Example.co.uk".into())]
        );
        assert!(kinds("user@localhost and @handle and a@b.c").is_empty());
    }

    #[test]
    fn finds_ip_addresses() {
        assert_eq!(
            kinds("from 192.168.10.5:443 via [2001:db8::7]:80 and ::ffff:10.0.0.1"),
            vec![
                (PiiKind::Ipv4, "192.168.10.5".into()),
                (PiiKind::Ipv6, "2001:db8::7".into()),
                (PiiKind::Ipv6, "::ffff:10.0.0.1".into()),
            ]
        );
        assert!(kinds("v1.2.3.4 and 1.2.3.4.5 and 300.1.1.1 and 12:30:45").is_empty());
    }

    #[test]
    fn finds_luhn_valid_cards_only() {
        assert_eq!(
            kinds("pay 4111 1111 1111 1111 or 5500-0000-0000-0004 or 378282246310005"),
            vec![
                (PiiKind::Card, "4111 1111 1111 1111".into()),
                (PiiKind::Card, "5500-0000-0000-0004".into()),
                (PiiKind::Card, "378282246310005".into()),
            ]
        );
        // Luhn fails: not a card (and too long for a phone).
        assert!(kinds("4111 1111 1111 1112").is_empty());
        // An Amazon order id is not a card layout.
        assert!(kinds("order 123-4567890-1234567").is_empty());
    }

    #[test]
    fn finds_phones_but_not_dates_or_ids() {
        assert_eq!(
            kinds("call +1 (555) 123-4567 or 555.123.4567 or +442071234567"),
            vec![
                (PiiKind::Phone, "+1 (555) 123-4567".into()),
                (PiiKind::Phone, "555.123.4567".into()),
                (PiiKind::Phone, "+442071234567".into()),
            ]
        );
        assert!(kinds("on 2026-11-28 id 5551234567 v 1.2.3").is_empty());
        // UUIDs and other hyphenated identifiers are not phones.
        assert!(kinds("/orders/12345678-1234-5678-9abc-123456789012 1234-5678-abcd").is_empty());
    }

    #[test]
    fn finds_mac_addresses_in_both_spellings() {
        assert_eq!(
            kinds("dev 3C:22:FB:0a:1b:2c up, wifi 3c-22-fb-0a-1b-2c"),
            vec![
                (PiiKind::Mac, "3C:22:FB:0a:1b:2c".into()),
                (PiiKind::Mac, "3c-22-fb-0a-1b-2c".into()),
            ]
        );
        assert_eq!(
            detect("3C:22:FB:0a:1b:2c")[0].normalized,
            detect("3c-22-fb-0a-1b-2c")[0].normalized
        );
        // Seven groups, or mixed separators, are something else.
        assert!(kinds("aa:bb:cc:dd:ee:ff:00 aa:bb-cc:dd:ee:ff").is_empty());
        assert_eq!(
            kinds("aa-bb-cc-dd-ee-ff"),
            vec![(PiiKind::Mac, "aa-bb-cc-dd-ee-ff".into())]
        );
    }

    #[test]
    fn normalised_forms_meet() {
        let a = detect("A@Example.COM");
        let b = detect("a@example.com");
        assert_eq!(a[0].normalized, b[0].normalized);
        let c = detect("2001:DB8:0:0::1");
        assert_eq!(c[0].normalized, "2001:db8::1");
    }

    #[test]
    fn non_ascii_text_is_safe() {
        let t = "é@ü.de ☃ 4111 1111 1111 1111 ß";
        for d in detect(t) {
            assert!(t.is_char_boundary(d.start) && t.is_char_boundary(d.end));
        }
    }
}
