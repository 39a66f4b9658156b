//! Header maps as the harness keeps them.

/// Header maps keep order and allow repeated names, like Envoy's.
pub type Headers = Vec<(String, String)>;

/// The first value of a header, by name (case-insensitive).
pub fn header_value<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Header names lower-cased, as Envoy's HTTP codecs deliver them.
pub(crate) fn lower(headers: &[(&str, &str)]) -> Headers {
    headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect()
}
