use proptest::prelude::*;

use super::*;

/// RFC 3986 section 5.2.4, transcribed step by step from the RFC (input and
/// output buffers, rules A to E), independent of the production code,
/// which works on segments.
mod reference {
    pub fn remove_dot_segments(path: &str) -> String {
        // 1. The input buffer is initialized with the now-appended path
        //    components and the output buffer is initialized to the empty
        //    string.
        let mut input = path.to_string();
        let mut output = String::new();
        // 2. While the input buffer is not empty, loop as follows:
        while !input.is_empty() {
            if input.starts_with("../") {
                // A. If the input buffer begins with a prefix of "../" or
                //    "./", then remove that prefix from the input buffer;
                input.replace_range(..3, "");
            } else if input.starts_with("./") {
                input.replace_range(..2, "");
            } else if input.starts_with("/./") {
                // B. if the input buffer begins with a prefix of "/./" or
                //    "/.", where "." is a complete path segment, then replace
                //    that prefix with "/" in the input buffer;
                input.replace_range(..3, "/");
            } else if input == "/." {
                input = "/".to_string();
            } else if input.starts_with("/../") || input == "/.." {
                // C. if the input buffer begins with a prefix of "/../" or
                //    "/..", where ".." is a complete path segment, then
                //    replace that prefix with "/" in the input buffer and
                //    remove the last segment and its preceding "/" (if any)
                //    from the output buffer;
                let len = if input == "/.." { 3 } else { 4 };
                input.replace_range(..len, "/");
                match output.rfind('/') {
                    Some(i) => output.truncate(i),
                    None => output.clear(),
                }
            } else if input == "." || input == ".." {
                // D. if the input buffer consists only of "." or "..", then
                //    remove that from the input buffer;
                input.clear();
            } else {
                // E. move the first path segment in the input buffer to the
                //    end of the output buffer, including the initial "/"
                //    character (if any) and any subsequent characters up to,
                //    but not including, the next "/" character or the end of
                //    the input buffer.
                let start = usize::from(input.starts_with('/'));
                let end = input[start..].find('/').map_or(input.len(), |i| i + start);
                output.push_str(&input[..end]);
                input.replace_range(..end, "");
            }
        }
        // 3. Finally, the output buffer is returned as the result.
        output
    }

    /// RFC 3986 section 2.3 / 6.2.2.2: `%XX` of an unreserved character is
    /// that character (assumes valid escapes).
    pub fn decode_unreserved(path: &str) -> String {
        let mut out = String::new();
        let mut rest = path;
        while let Some(i) = rest.find('%') {
            out.push_str(&rest[..i]);
            let hex = &rest[i + 1..i + 3];
            let v = u8::from_str_radix(hex, 16).unwrap();
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            rest = &rest[i + 3..];
        }
        out.push_str(rest);
        out
    }

    pub fn merge_slashes(path: &str) -> String {
        let mut out = path.to_string();
        while out.contains("//") {
            out = out.replace("//", "/");
        }
        out
    }

    pub fn normal_form(path: &str) -> String {
        merge_slashes(&remove_dot_segments(&decode_unreserved(path)))
    }
}

fn norm(p: &str) -> Result<(String, bool), PathProblem> {
    normalize(p).map(|n| (n.as_str().to_string(), n.changed()))
}

#[test]
fn reference_matches_the_rfc_examples() {
    // RFC 3986 section 5.2.4's own examples, and section 5.4.2's.
    assert_eq!(reference::remove_dot_segments("/a/b/c/./../../g"), "/a/g");
    assert_eq!(
        reference::remove_dot_segments("mid/content=5/../6"),
        "mid/6"
    );
    assert_eq!(reference::remove_dot_segments("/a/b/c/../../../g"), "/g");
    assert_eq!(reference::remove_dot_segments("/a/b/c/../../../../g"), "/g");
    assert_eq!(reference::remove_dot_segments("/a/b/c/g/.."), "/a/b/c/");
    assert_eq!(reference::remove_dot_segments("/a/b/c/."), "/a/b/c/");
    assert_eq!(reference::remove_dot_segments("/a/b/c/g."), "/a/b/c/g.");
}

#[test]
fn every_spelling_of_the_orders_path_has_one_normal_form() {
    let want = "/orders/v0/orders";
    for spelling in [
        "//orders/v0/orders",
        "/x/../orders/v0/orders",
        "/./orders/v0/orders",
        "/%6frders/v0/orders",
        "/%6Frders/v0/orders",
        "/orders//v0///orders",
        "/orders/v0/x/%2e%2e/orders",
        "/orders/v0/x/%2E./orders",
        "/orders/./v0/./orders",
        "/../orders/v0/orders",
        "/%6f%72%64%65%72%73/v0/orders",
    ] {
        assert_eq!(norm(spelling), Ok((want.to_string(), true)), "{spelling}");
    }
    assert_eq!(norm(want), Ok((want.to_string(), false)));
    // Case is not changed here: route matching folds it.
    assert_eq!(
        norm("/ORDERS/v0/orders"),
        Ok(("/ORDERS/v0/orders".into(), false))
    );
}

#[test]
fn escapes_of_reserved_characters_keep_their_meaning() {
    // Only the hex case differs: not a change.
    assert_eq!(norm("/a%3ab"), Ok(("/a%3Ab".into(), false)));
    assert_eq!(norm("/a%40b%20c"), Ok(("/a%40b%20c".into(), false)));
    assert_eq!(norm("/a%3Ab/"), Ok(("/a%3Ab/".into(), false)));
}

#[test]
fn spellings_without_one_meaning_are_refused() {
    use PathProblem::*;
    for (path, problem) in [
        ("/orders%2fv0/orders", EncodedSlash),
        ("/orders%2Fv0/orders", EncodedSlash),
        ("/orders%5cv0/orders", EncodedSlash),
        ("/orders%5Cv0", EncodedSlash),
        ("/orders\\v0/orders", Backslash),
        ("/orders;x=1/v0/orders", PathParameter),
        ("/orders%3bx/v0", PathParameter),
        ("/orders/v0/%252e%252e/x", DoubleEncoded),
        ("/orders/%25%32%65", DoubleEncoded),
        ("/orders%00/v0", ControlOrNonAscii),
        ("/orders%0a", ControlOrNonAscii),
        ("/order%C5%BF/v0", ControlOrNonAscii),
        ("/orderſ/v0", ControlOrNonAscii),
        ("/orders /v0", ControlOrNonAscii),
        ("/orders%zz", BadEscape),
        ("/orders%4", BadEscape),
        ("/orders./v0/orders", TrailingDotOrSpace),
        ("/orders%2e/v0/orders", TrailingDotOrSpace),
        ("/orders%20/v0/orders", TrailingDotOrSpace),
        ("/orders/.../v0", TrailingDotOrSpace),
        ("orders/v0", NotOriginForm),
        ("*", NotOriginForm),
        ("", NotOriginForm),
        ("https://h/orders", NotOriginForm),
    ] {
        assert_eq!(norm(path), Err(problem), "{path}");
    }
}

#[test]
fn split_query_keeps_the_query_for_the_rewrite() {
    assert_eq!(split_query("/a/../b?x=/../&y"), ("/a/../b", "?x=/../&y"));
    assert_eq!(split_query("/a#f"), ("/a", "#f"));
    assert_eq!(split_query("/a"), ("/a", ""));
}

/// Paths built from the characters that matter for normalisation.
fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/"),
        Just("/"),
        Just("."),
        Just(".."),
        Just("a"),
        Just("B"),
        Just("~"),
        Just("%2e"),
        Just("%2E"),
        Just("%61"),
        Just("%7e"),
        Just("%3a"),
        Just("%40"),
        Just("-"),
        Just("x"),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|v| format!("/{}", v.concat()))
}

/// Any printable ASCII, with escapes of anything.
fn wild_path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[ -~]",
        "%[0-9a-fA-F]{2}",
        Just("/".to_string()),
        Just("/..".to_string()),
        Just("/.".to_string()),
    ];
    prop::collection::vec(piece, 0..20).prop_map(|v| format!("/{}", v.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Wherever the production code gives a normal form, it is the
    /// reference pipeline's (decode unreserved, RFC 5.2.4, merge slashes).
    #[test]
    fn agrees_with_the_rfc_reference(p in path_strategy()) {
        let want = reference::normal_form(&p);
        match normalize(&p) {
            Ok(n) => {
                prop_assert_eq!(n.as_str(), want.as_str());
                // Unchanged exactly when the input differs from its normal
                // form only in the hex case of escapes.
                prop_assert_eq!(n.changed(), want != p.replace("%3a", "%3A"));
            }
            // Only the segment checks refuse these inputs: the reference
            // form then has a segment ending in '.'.
            Err(e) => {
                prop_assert_eq!(e, PathProblem::TrailingDotOrSpace);
                prop_assert!(want.split('/').any(|s| s.ends_with('.')), "{} -> {}", p, want);
            }
        }
    }

    /// The normal form is a fixed point, and holds no dot segment, no
    /// empty inner segment, nothing that is refused.
    #[test]
    fn normal_form_is_stable(p in wild_path_strategy()) {
        if let Ok(n) = normalize(&p) {
            let again = normalize(n.as_str()).expect("a normal form is accepted");
            prop_assert_eq!(again.as_str(), n.as_str());
            prop_assert!(!again.changed());
            prop_assert!(!n.as_str().contains("//"));
            prop_assert!(n.as_str().split('/').all(|s| s != "." && s != ".."));
            prop_assert!(!n.as_str().contains('\\') && !n.as_str().contains(';'));
            let lower = n.as_str().to_ascii_lowercase();
            prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"));
            // Unchanged means: equal to the input up to the hex case of escapes.
            if !n.changed() {
                prop_assert_eq!(n.as_str().to_ascii_lowercase(), p.to_ascii_lowercase());
            }
        }
    }

    /// Any input carrying an encoded slash or backslash, a raw backslash or
    /// a `;` is refused, never normalised.
    #[test]
    fn separators_in_disguise_are_always_refused(
        a in path_strategy(),
        b in path_strategy(),
        bad in prop_oneof![Just("%2f"), Just("%2F"), Just("%5c"), Just("%5C"), Just("\\"), Just(";"), Just("%3b")],
    ) {
        let p = format!("{a}{bad}{b}");
        prop_assert!(normalize(&p).is_err(), "{}", p);
    }
}
