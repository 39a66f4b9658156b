//! Policy parsing: whatever bytes arrive as the plugin configuration.
//!
//! Input: the policy document. Properties: no panic; an accepted policy
//! is a JSON document (serde_json reads it), and a refused one names a
//! field and a problem (the one log line an operator gets); parsing is
//! deterministic; everything the filter then does with an accepted policy
//! (route matching, header edits, keyring loading, body plans and
//! rewrites, the scrubber it builds) runs without a panic.

use dpp_core::policy::Direction;
use dpp_core::protect::{self, BodyHeaders};
use dpp_core::{Policy, RequestFacts};

use crate::fixtures::{keyring, log_key, KEYRING_TEXT};

const REQUESTS: &[(&str, &str, &str)] = &[
    ("localhost", "/orders/v0/orders/1", "GET"),
    ("api.example.com:443", "/orders/?BuyerEmail=a%40b.c", "POST"),
    ("", "", ""),
    ("x", "//..//%2e%2e/orders#f", "PATCH"),
];

const BODY: &[u8] =
    br#"{"payload":{"BuyerEmail":"a@b.c","Orders":[{"Phone":"1"}]},"a":[1,{"b":2}]}"#;

pub fn check(data: &[u8]) {
    let parsed = Policy::from_json(data);
    let again = Policy::from_json(data);
    assert_eq!(
        parsed.as_ref().err(),
        again.as_ref().err(),
        "parsing is not deterministic"
    );
    let policy = match parsed {
        Ok(p) => p,
        Err(e) => {
            assert!(
                !e.field.is_empty() && !e.problem.is_empty(),
                "an error that names nothing: {e:?}"
            );
            return;
        }
    };
    serde_json::from_slice::<serde_json::Value>(data).expect("an accepted policy is JSON");

    for (host, path, method) in REQUESTS {
        for route_name in [None, Some("orders")] {
            let facts = RequestFacts {
                host,
                path,
                method,
                route_name,
            };
            let _ = policy.decide_request(&facts);
        }
    }
    if let Some(keys) = &policy.keys {
        let _ = keys.load(|_| Some(KEYRING_TEXT.to_string()));
    }
    let leaves = policy.selector_leaf_names();
    let scrubber = policy.logging.scrubber(Some(log_key()), leaves);
    let _ = scrubber.url("/orders?BuyerEmail=a%40b.c");
    for route in &policy.routes {
        let _ = route.response_header_edits();
        let headers = BodyHeaders {
            content_type: Some("application/json"),
            content_encoding: None,
            content_length: Some("70"),
        };
        let _ = protect::plan(&route.body, &headers);
        for dir in [Direction::Request, Direction::Response] {
            if let Some(rules) = route.fields(dir) {
                let _ = protect::rewrite(rules, keyring(), BODY);
            }
        }
    }
}
