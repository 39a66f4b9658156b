use super::*;
use crate::policy::{Direction, Policy};

const KEYS: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn policy(route: &str) -> Policy {
    let doc = format!(r#"{{"version":1,"keys":{{"env":"DPP_KEYS"}},"routes":[{route}]}}"#);
    Policy::from_json(doc.as_bytes()).unwrap()
}

fn keyring() -> Keyring {
    Keyring::parse(KEYS).unwrap()
}

const ORDER: &str = r#"{"payload": {"AmazonOrderId": "902-3159896-1390916",
  "BuyerInfo": {"BuyerEmail": "buyer@example.com", "BuyerName": "Jane Q"},
  "ShippingAddress": {"Name": "Jane Q", "AddressLine1": "1 Main St", "PostalCode": 98101,
                      "Phone": "+1 206 555 0100", "City": "Seattle"},
  "OrderTotal": {"Amount": 10.50, "CurrencyCode": "USD"}}}"#;

/// Hop A encrypts the request, hop B decrypts it (same direction).
fn hops() -> (Policy, Policy) {
    (
        policy(
            r#"{"name":"o","encrypt":[{"direction":"request","preset":"sp-api-orders","context":"t1"}],
                "decrypt":[{"direction":"response","preset":"sp-api-orders","context":"t1"}]}"#,
        ),
        policy(
            r#"{"name":"o","decrypt":[{"direction":"request","preset":"sp-api-orders","context":"t1"}],
                "encrypt":[{"direction":"response","preset":"sp-api-orders","context":"t1"}]}"#,
        ),
    )
}

#[test]
fn encrypt_then_decrypt_restores_the_body_and_hides_every_value() {
    let (a, b) = hops();
    let ring = keyring();
    let enc = rewrite(
        a.routes[0].fields(Direction::Request).unwrap(),
        &ring,
        ORDER.as_bytes(),
    )
    .unwrap()
    .unwrap();
    let enc_text = String::from_utf8(enc.clone()).unwrap();
    for pii in [
        "buyer@example.com",
        "Jane Q",
        "1 Main St",
        "98101",
        "555 0100",
        "Seattle",
    ] {
        assert!(!enc_text.contains(pii), "{pii} left in {enc_text}");
    }
    // Unselected values and their spelling stay.
    assert!(enc_text.contains(r#""Amount": 10.50"#));
    assert!(enc_text.contains(r#""AmazonOrderId": "902-3159896-1390916""#));
    let dec = rewrite(b.routes[0].fields(Direction::Request).unwrap(), &ring, &enc)
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8(dec).unwrap(), ORDER);
    // The same request envelopes replayed into a response do not open.
    assert_eq!(
        rewrite(
            a.routes[0].fields(Direction::Response).unwrap(),
            &ring,
            &enc
        ),
        Err(BodyFailure::Envelope(EnvelopeError::Tampered))
    );
}

#[test]
fn decrypt_refuses_plain_values_tampering_and_unknown_keys() {
    let p = policy(
        r#"{"name":"o","decrypt":[{"direction":"request","selectors":["$.payload.BuyerInfo.BuyerEmail"]}]}"#,
    );
    let rules = p.routes[0].fields(Direction::Request).unwrap();
    let ring = keyring();
    let plain = br#"{"payload":{"BuyerInfo":{"BuyerEmail":"x@y.z"}}}"#;
    assert_eq!(
        rewrite(rules, &ring, plain),
        Err(BodyFailure::Envelope(EnvelopeError::NotEnvelope))
    );
    let unknown = br#"{"payload":{"BuyerInfo":{"BuyerEmail":"dpg1.k9.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}}"#;
    assert_eq!(
        rewrite(rules, &ring, unknown),
        Err(BodyFailure::Envelope(EnvelopeError::UnknownKey))
    );
    assert_eq!(
        rewrite(rules, &ring, b"{\"payload\":"),
        Err(BodyFailure::Malformed)
    );
    // A body without the field passes unchanged (there is nothing to reveal).
    assert_eq!(rewrite(rules, &ring, br#"{"payload":{}}"#), Ok(None));
}

#[test]
fn header_plan_and_statuses() {
    let opts = BodyOptions {
        max_bytes: 100,
        non_json: NonJson::Reject,
    };
    let h = |ct: Option<&'static str>, ce: Option<&'static str>, cl: Option<&'static str>| {
        BodyHeaders {
            content_type: ct,
            content_encoding: ce,
            content_length: cl,
        }
    };
    assert_eq!(
        plan(&opts, &h(Some("application/json"), None, Some("100"))),
        Ok(BodyPlan::Buffer)
    );
    assert_eq!(
        plan(
            &opts,
            &h(
                Some("Application/Vnd.Amazon+JSON; charset=utf-8"),
                Some("identity"),
                None
            )
        ),
        Ok(BodyPlan::Buffer)
    );
    assert_eq!(
        plan(&opts, &h(Some("application/json"), None, Some("101"))),
        Err(BodyFailure::TooLarge)
    );
    assert_eq!(
        plan(&opts, &h(Some("text/plain"), None, None)),
        Err(BodyFailure::NotJson)
    );
    assert_eq!(plan(&opts, &h(None, None, None)), Err(BodyFailure::NotJson));
    assert_eq!(
        plan(&opts, &h(Some("application/jsonx"), None, None)),
        Err(BodyFailure::NotJson)
    );
    assert_eq!(
        plan(&opts, &h(Some("application/json"), Some("gzip"), None)),
        Err(BodyFailure::ContentEncoding)
    );
    let pass = BodyOptions {
        non_json: NonJson::Pass,
        ..opts
    };
    assert_eq!(
        plan(&pass, &h(Some("text/csv"), None, None)),
        Ok(BodyPlan::Pass)
    );

    use Direction::*;
    let table = [
        (BodyFailure::TooLarge, 413, "body_too_large"),
        (BodyFailure::NotJson, 415, "unsupported_content_type"),
        (
            BodyFailure::ContentEncoding,
            415,
            "unsupported_content_encoding",
        ),
        (BodyFailure::Malformed, 400, "malformed_body"),
        (
            BodyFailure::Envelope(EnvelopeError::Tampered),
            502,
            "envelope_rejected",
        ),
        (BodyFailure::Seal, 500, "encryption_failed"),
    ];
    for (f, status, event) in table {
        let (reply, ev) = f.reply(Request, "orders", "POST");
        assert_eq!(reply.status, status);
        assert_eq!(ev.event.name(), event);
        assert_eq!(f.reply(Response, "orders", "GET").0.status, 502);
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"], f.code());
    }
}

#[test]
fn a_lone_surrogate_is_a_malformed_body_in_every_mode() {
    // Found by fuzzing (fuzz target `splice`): deterministic mode and
    // blind indexes canonicalise the value, which failed on a lone
    // surrogate and answered a client's bad body with 500
    // encryption_failed. It is a malformed body (400), wherever it sits.
    let ring = keyring();
    for options in [
        r#""mode":"deterministic""#,
        r#""blind_index":true"#,
        r#""mode":"random""#,
    ] {
        let p = policy(&format!(
            r#"{{"name":"o","encrypt":[{{"direction":"request","selectors":["$.a"],{options}}}]}}"#
        ));
        let rules = p.routes[0].fields(Direction::Request).unwrap();
        for body in [r#"{"a":"x\ud800"}"#, r#"{"b":"\udc00","a":1}"#] {
            let failure = rewrite(rules, &ring, body.as_bytes()).unwrap_err();
            assert_eq!(failure, BodyFailure::Malformed, "{options} {body}");
            assert_eq!(failure.status(Direction::Request), 400);
        }
    }
}

/// Member names that a case-insensitive reader (Go's encoding/json, ASP.NET)
/// would bind to a selected field are refused on both actions; exact names
/// and unrelated names are not.
#[test]
fn case_folded_member_names_are_refused() {
    let (a, b) = hops();
    let ring = keyring();
    let enc = a.routes[0].fields(Direction::Request).unwrap();
    let dec = b.routes[0].fields(Direction::Request).unwrap();
    for body in [
        r#"{"payload":{"buyerInfo":{"BuyerEmail":"x@y.z"}}}"#,
        r#"{"payload":{"BuyerInfo":{"buyerEmail":"x@y.z"}}}"#,
        r#"{"PAYLOAD":{"BuyerInfo":{"BuyerEmail":"x@y.z"}}}"#,
        r#"{"payload":{"BuyerInfo":{"buyeremail":"x@y.z","BuyerEmail":"x@y.z"}}}"#,
        // Go folds the long s to s and the Kelvin sign to k; .NET the
        // dotless i to I.
        "{\"payload\":{\"\u{17F}hippingAddress\":{\"City\":\"Seattle\"}}}",
        "{\"payload\":{\"BuyerTaxInformation\":{\"BuyerTaxRegi\u{17F}trationId\":\"DE1\"}}}",
        "{\"payload\":{\"BuyerInfo\":{\"BuyerEma\u{131}l\":\"x@y.z\"}}}",
        "{\"order\":{\"orderItems\":[{\"fulfillment\":{\"pac\u{212A}ing\":{\"giftOption\":{\"giftMessage\":\"hi\"}}}}]}}",
        // Escaped spellings are unescaped first.
        r#"{"payload":{"Buyer\u0069nfo":{"BuyerEmail":"x@y.z"}}}"#,
    ] {
        assert_eq!(rewrite(enc, &ring, body.as_bytes()), Err(BodyFailure::AmbiguousMember), "{body}");
        assert_eq!(rewrite(dec, &ring, body.as_bytes()), Err(BodyFailure::AmbiguousMember), "{body}");
    }
    // Exact names, and names no selector follows, pass.
    let ok =
        r#"{"payload":{"BuyerInfo":{"BuyerEmail":"x@y.z"},"buyerNote":"n","orderstatus":"x"}}"#;
    assert!(rewrite(enc, &ring, ok.as_bytes()).unwrap().is_some());
    // The 2026 preset spells `buyerEmail` under `buyer`: exact there.
    let v2026 = r#"{"order":{"buyer":{"buyerEmail":"a@b.c"}}}"#;
    assert!(rewrite(enc, &ring, v2026.as_bytes()).unwrap().is_some());
    let (reply, event) = BodyFailure::AmbiguousMember.reply(Direction::Request, "o", "POST");
    assert_eq!(
        (reply.status, event.event.name()),
        (400, "ambiguous_member")
    );
    assert_eq!(
        BodyFailure::AmbiguousMember.status(Direction::Response),
        502
    );
}

fn bound_policies(fields: &str) -> (Policy, Policy) {
    (
        policy(&format!(
            r#"{{"name":"o","encrypt":[{{"direction":"response","preset":"sp-api-orders","context":"t1","context_fields":{fields}}}]}}"#
        )),
        policy(&format!(
            r#"{{"name":"o","decrypt":[{{"direction":"response","preset":"sp-api-orders","context":"t1","context_fields":{fields}}}]}}"#
        )),
    )
}

const ORDER_FIELDS: &str = r#"["$.payload.Orders[*].AmazonOrderId","$.payload.AmazonOrderId"]"#;

/// `context_fields` bind each envelope to its own record: per array element
/// for `Orders[*]`, to the payload for a single order.
#[test]
fn envelopes_moved_between_records_do_not_open() {
    let (b, a) = bound_policies(ORDER_FIELDS);
    let ring = keyring();
    let enc = b.routes[0].fields(Direction::Response).unwrap();
    let dec = a.routes[0].fields(Direction::Response).unwrap();
    let list = r#"{"payload":{"Orders":[
        {"AmazonOrderId":"111-1","BuyerInfo":{"BuyerEmail":"one@example.com"}},
        {"BuyerInfo":{"BuyerEmail":"two@example.com"},"AmazonOrderId":"222-2"}]}}"#;
    let sealed: serde_json::Value =
        serde_json::from_slice(&rewrite(enc, &ring, list.as_bytes()).unwrap().unwrap()).unwrap();
    let back = rewrite(dec, &ring, sealed.to_string().as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&back).unwrap(),
        serde_json::from_str::<serde_json::Value>(list).unwrap(),
        "the id may come after the field in its record"
    );
    // Swap the two e-mail envelopes: same path, other record.
    let mut swapped = sealed.clone();
    let orders = swapped["payload"]["Orders"].as_array_mut().unwrap();
    let e0 = orders[0]["BuyerInfo"]["BuyerEmail"].clone();
    orders[0]["BuyerInfo"]["BuyerEmail"] = orders[1]["BuyerInfo"]["BuyerEmail"].clone();
    orders[1]["BuyerInfo"]["BuyerEmail"] = e0;
    assert_eq!(
        rewrite(dec, &ring, swapped.to_string().as_bytes()),
        Err(BodyFailure::Envelope(EnvelopeError::Tampered))
    );
    // Re-label the order instead: the envelope no longer opens either.
    let mut relabelled = sealed.clone();
    relabelled["payload"]["Orders"][0]["AmazonOrderId"] = "222-2".into();
    assert_eq!(
        rewrite(dec, &ring, relabelled.to_string().as_bytes()),
        Err(BodyFailure::Envelope(EnvelopeError::Tampered))
    );
    // A re-spelled id with the same value still opens (canonical values).
    let respelled = sealed.to_string().replacen(
        r#""AmazonOrderId":"111-1""#,
        r#""AmazonOrderId" : "111\u002d1""#,
        1,
    );
    assert!(rewrite(dec, &ring, respelled.as_bytes()).is_ok());
    // A single order binds to $.payload.AmazonOrderId.
    let single = r#"{"payload":{"AmazonOrderId":"333-3","ShippingAddress":{"City":"Lyon"}}}"#;
    let s1 = rewrite(enc, &ring, single.as_bytes()).unwrap().unwrap();
    let other = String::from_utf8(s1.clone())
        .unwrap()
        .replace("333-3", "444-4");
    assert_eq!(
        rewrite(dec, &ring, other.as_bytes()),
        Err(BodyFailure::Envelope(EnvelopeError::Tampered))
    );
    assert!(rewrite(dec, &ring, &s1).is_ok());
}

/// A record without its context field, or with it twice (or case-folded),
/// fails closed on both sides; a record with nothing selected needs none.
#[test]
fn missing_or_ambiguous_context_fields_fail_closed() {
    let (b, a) = bound_policies(ORDER_FIELDS);
    let ring = keyring();
    let enc = b.routes[0].fields(Direction::Response).unwrap();
    let dec = a.routes[0].fields(Direction::Response).unwrap();
    let missing = r#"{"payload":{"Orders":[{"BuyerInfo":{"BuyerEmail":"one@example.com"}}]}}"#;
    assert_eq!(
        rewrite(enc, &ring, missing.as_bytes()),
        Err(BodyFailure::MissingContextField)
    );
    let sealed = rewrite(
        enc,
        &ring,
        br#"{"payload":{"Orders":[{"AmazonOrderId":"1","BuyerInfo":{"BuyerEmail":"one@example.com"}}]}}"#,
    )
    .unwrap()
    .unwrap();
    let dropped = String::from_utf8(sealed)
        .unwrap()
        .replace(r#""AmazonOrderId":"1","#, "");
    assert_eq!(
        rewrite(dec, &ring, dropped.as_bytes()),
        Err(BodyFailure::MissingContextField)
    );
    for body in [
        r#"{"payload":{"Orders":[{"AmazonOrderId":"1","AmazonOrderId":"2","BuyerInfo":{"BuyerEmail":"e"}}]}}"#,
        r#"{"payload":{"Orders":[{"AmazonOrderId":"1","amazonOrderId":"2","BuyerInfo":{"BuyerEmail":"e"}}]}}"#,
    ] {
        assert_eq!(
            rewrite(enc, &ring, body.as_bytes()),
            Err(BodyFailure::AmbiguousMember),
            "{body}"
        );
    }
    // Nothing selected in the record: no id needed.
    let nothing = r#"{"payload":{"Orders":[{"OrderStatus":"Shipped"}]}}"#;
    assert_eq!(rewrite(enc, &ring, nothing.as_bytes()), Ok(None));
    assert_eq!(
        BodyFailure::MissingContextField.status(Direction::Request),
        400
    );
}

#[test]
fn context_fields_must_be_concrete_and_stay_readable() {
    for (fields, problem) in [
        (r#"["$.payload.BuyerInfo.BuyerEmail"]"#, "context_fields[0]"),
        (
            r#"["$.payload.ShippingAddress.CountryCode"]"#,
            "context_fields[0]",
        ),
        (r#"["$..AmazonOrderId"]"#, "context_fields[0]"),
        (
            r#"["$.payload.Orders[0].AmazonOrderId"]"#,
            "context_fields[0]",
        ),
        (
            r#"["$.payload.AmazonOrderId","$.payload.Orders[*]"]"#,
            "context_fields[1]",
        ),
    ] {
        let doc = format!(
            r#"{{"version":1,"keys":{{"env":"K"}},"routes":[{{"name":"o","encrypt":[{{"direction":"request","preset":"sp-api-orders","context_fields":{fields}}}]}}]}}"#
        );
        let err = Policy::from_json(doc.as_bytes()).unwrap_err();
        assert!(err.to_string().contains(problem), "{fields}: {err}");
    }
}

/// Object granularity seals each PII object whole: fewer envelopes, and
/// the object comes back as it was.
#[test]
fn object_granularity_seals_objects_whole() {
    let enc = policy(
        r#"{"name":"o","encrypt":[{"direction":"request","preset":"sp-api-orders","granularity":"object"}]}"#,
    );
    let dec = policy(
        r#"{"name":"o","decrypt":[{"direction":"request","preset":"sp-api-orders","granularity":"object"}]}"#,
    );
    let ring = keyring();
    let (sealed, n) = rewrite_counted(
        enc.routes[0].fields(Direction::Request).unwrap(),
        &ring,
        ORDER.as_bytes(),
    )
    .unwrap();
    assert_eq!(n, 2, "BuyerInfo and ShippingAddress");
    let v: serde_json::Value = serde_json::from_slice(sealed.as_ref().unwrap()).unwrap();
    assert!(v["payload"]["ShippingAddress"]
        .as_str()
        .unwrap()
        .starts_with("dpg1.k1."));
    let back = rewrite(
        dec.routes[0].fields(Direction::Request).unwrap(),
        &ring,
        &sealed.unwrap(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(String::from_utf8(back).unwrap(), ORDER);
    let bad = r#"{"version":1,"keys":{"env":"K"},"routes":[{"name":"o","encrypt":[{"direction":"request","selectors":["$.a"],"granularity":"object"}]}]}"#;
    assert!(Policy::from_json(bad.as_bytes())
        .unwrap_err()
        .to_string()
        .contains("granularity"));
}
