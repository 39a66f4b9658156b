use super::selector::{Selector, SelectorSet};
use super::*;
use proptest::prelude::*;

fn set(selectors: &[&str]) -> Automaton {
    let mut s = SelectorSet::default();
    for (i, t) in selectors.iter().enumerate() {
        s.push(Selector::parse(t).unwrap(), i);
    }
    s.compile().unwrap()
}

/// Replaces every selected value by `<path|rule>` as a JSON string.
fn mark(body: &str, selectors: &[&str]) -> Result<Option<String>, SpliceError<()>> {
    splice(body.as_bytes(), &set(selectors), |sel, out| {
        out.extend_from_slice(
            serde_json::to_string(&format!("{}|{}", sel.path, sel.rule))
                .unwrap()
                .as_bytes(),
        );
        Ok(())
    })
    .map(|o| o.map(|b| String::from_utf8(b).unwrap()))
}

#[test]
fn untouched_bytes_stay_exactly_as_written() {
    let body =
        "{ \"z\" : 1.50E+3 ,\n\t\"payload\": {\"BuyerEmail\" :\"a@b.c\" , \"n\":-0.0},\"a\":[ ]}  ";
    let out = mark(body, &["$.payload.BuyerEmail"]).unwrap().unwrap();
    assert_eq!(
        out,
        "{ \"z\" : 1.50E+3 ,\n\t\"payload\": {\"BuyerEmail\" :\"$.payload.BuyerEmail|0\" , \"n\":-0.0},\"a\":[ ]}  "
    );
}

#[test]
fn nothing_selected_means_no_rewrite() {
    assert!(mark(r#"{"a":{"b":1}}"#, &["$.a.c", "$..x"])
        .unwrap()
        .is_none());
}

#[test]
fn wildcards_descendants_indexes_and_escaped_names() {
    let body = r#"{"payload":{"Orders":[{"BuyerInfo":{"BuyerEmail":"x"},"Phone":1},{"BuyerInfo":{"Buyer\u0045mail":{"nested":[1,2]}}}],
        "ShippingAddress":{"City":"c","Phone":"p"},"odd key":true,"list":[10,20,30]}}"#;
    let out = mark(
        body,
        &[
            "$.payload.Orders[*].BuyerInfo.BuyerEmail",
            "$..Phone",
            "$.payload['odd key']",
            "$.payload.list[1]",
        ],
    )
    .unwrap()
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let p = &v["payload"];
    assert_eq!(
        p["Orders"][0]["BuyerInfo"]["BuyerEmail"],
        "$.payload.Orders[*].BuyerInfo.BuyerEmail|0"
    );
    // The escaped member name matches and its whole object value is taken.
    assert_eq!(
        p["Orders"][1]["BuyerInfo"]["BuyerEmail"],
        "$.payload.Orders[*].BuyerInfo.BuyerEmail|0"
    );
    assert_eq!(p["Orders"][0]["Phone"], "$.payload.Orders[*].Phone|1");
    assert_eq!(
        p["ShippingAddress"]["Phone"],
        "$.payload.ShippingAddress.Phone|1"
    );
    assert_eq!(p["ShippingAddress"]["City"], "c");
    assert_eq!(p["odd key"], "$.payload[\"odd key\"]|2");
    assert_eq!(
        p["list"],
        serde_json::json!([10, "$.payload.list[*]|3", 30])
    );
}

#[test]
fn member_wildcard_takes_each_member_and_first_rule_wins() {
    let out = mark(r#"{"a":{"x":1,"y":[2]},"b":3}"#, &["$.a.y", "$.a.*"])
        .unwrap()
        .unwrap();
    assert_eq!(out, r#"{"a":{"x":"$.a.x|1","y":"$.a.y|0"},"b":3}"#);
    // The outermost selected value is taken whole: `$..*` takes each
    // top-level member and never looks inside it.
    let out = mark(r#"{"a":{"x":1},"b":3}"#, &["$.a.x", "$..*"])
        .unwrap()
        .unwrap();
    assert_eq!(out, r#"{"a":"$.a|1","b":"$.b|1"}"#);
}

#[test]
fn duplicate_members_are_all_selected() {
    // A parser that keeps the last duplicate must not see a plain value.
    let out = mark(r#"{"e":"1","e":"2"}"#, &["$.e"]).unwrap().unwrap();
    assert_eq!(out, r#"{"e":"$.e|0","e":"$.e|0"}"#);
}

#[test]
fn malformed_bodies_are_refused() {
    for bad in [
        "",
        " ",
        "{",
        "{\"a\":}",
        "{\"a\" 1}",
        "[1,]",
        "{\"a\":1,}",
        "01",
        "1.",
        "-",
        "1e",
        "\"\\x\"",
        "\"\u{1}\"",
        "tru",
        "nul",
        "{\"a\":1}x",
        "[1 2]",
        "\"abc",
        "{1:2}",
        "\"\\u12g4\"",
        "{\"a\":[1,{\"b\":2]}",
        "NaN",
    ] {
        assert!(
            matches!(mark(bad, &["$.a"]), Err(SpliceError::Json(_))),
            "accepted {bad:?}"
        );
        assert!(
            validate(bad.as_bytes()).is_err(),
            "validate accepted {bad:?}"
        );
    }
    assert!(splice(b"{\"a\":\"\xff\"}", &set(&["$.a"]), |_, _| Ok::<_, ()>(())).is_err());
    let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    assert!(validate(deep.as_bytes()).is_err());
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(validate(ok.as_bytes()).is_ok());
}

#[test]
fn lone_surrogates_are_refused_pairs_accepted() {
    // Found by fuzzing (fuzz target `splice`): a lone surrogate passed the
    // scan, then failed canonicalisation in deterministic mode, answering
    // a client's malformed body with 500 encryption_failed.
    for bad in [
        r#""\ud800""#,
        r#""\uDBFF\u0041""#,
        r#""\udc00""#,
        r#"{"\ud800":1}"#,
        r#"["x\ud83d"]"#,
        r#""\ud83d\n""#,
    ] {
        assert!(validate(bad.as_bytes()).is_err(), "validate accepted {bad}");
        assert!(
            serde_json::from_str::<serde_json::Value>(bad).is_err(),
            "serde_json accepts {bad}"
        );
        assert!(
            matches!(mark(bad, &["$..*"]), Err(SpliceError::Json(_))),
            "splice accepted {bad}"
        );
    }
    for good in [
        r#""\ud83d\ude00""#,
        r#""\uD83D\uDE00x""#,
        r#""\u00e9\uffff""#,
    ] {
        assert!(validate(good.as_bytes()).is_ok(), "validate refused {good}");
        let mut out = Vec::new();
        canonical(good.as_bytes(), &mut out).unwrap();
    }
}

#[test]
fn canonical_form_ignores_spelling_that_does_not_change_the_value() {
    let mut a = Vec::new();
    let mut b = Vec::new();
    canonical(br#" { "k" : [ "\u0041\/" , 1.0e3 , true ] } "#, &mut a).unwrap();
    canonical(br#"{"k":["A/",1.0e3,true]}"#, &mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(String::from_utf8(a).unwrap(), r#"{"k":["A/",1.0e3,true]}"#);
}

proptest! {
    /// The validator accepts exactly what serde_json accepts (the fuzz
    /// target `splice` checks the same with \u escapes and any bytes).
    #[test]
    fn validator_agrees_with_serde_json(s in r#"[\[\]{}:, "a0-9.eE+\-tfrulns\\/]{0,24}"#) {
        let ours = validate(s.as_bytes()).is_ok();
        let theirs = serde_json::from_str::<serde::de::IgnoredAny>(&s).is_ok();
        prop_assert_eq!(ours, theirs, "{:?}", s);
    }
}
