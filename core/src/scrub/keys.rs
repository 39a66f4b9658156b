//! Names whose values are PII wherever they appear: query parameters,
//! `key=value` / `"key": "value"` pairs in free text, header names.
//!
//! Names are compared normalised: ASCII case folded and `-`, `_`, `.`
//! removed, so `BuyerEmail`, `buyer_email` and `buyer-email` are one key.

use std::collections::BTreeSet;

/// Built-in PII keys: the Selling Partner API model fields that carry buyer
/// or seller PII (Orders API v0 and 2026-01-01, see
/// ../shared/notes/dpp-controls.md), common generic spellings, and
/// credentials, which must never reach a log either.
pub const BUILT_IN: &[&str] = &[
    // Orders API buyer info
    "BuyerEmail",
    "BuyerName",
    "BuyerCounty",
    "BuyerCompanyName",
    "PurchaseOrderNumber",
    "BuyerPurchaseOrderNumber",
    "CompanyLegalName",
    "BuyerLegalCompanyName",
    "BuyerBusinessAddress",
    "BuyerTaxRegistrationId",
    "BuyerTaxOffice",
    "TaxRegistrationNumber",
    "LegalName",
    // Addresses
    "Name",
    "CompanyName",
    "AddressLine1",
    "AddressLine2",
    "AddressLine3",
    "City",
    "County",
    "District",
    "DistrictOrCounty",
    "StateOrRegion",
    "Municipality",
    "PostalCode",
    "Phone",
    "StreetName",
    "StreetNumber",
    "Complement",
    "Neighborhood",
    "GeoCoordinates",
    "DropOffLocation",
    "AddressInstructions",
    "AddressInstruction",
    "Address",
    // Gifts and customisation
    "GiftMessageText",
    "GiftMessage",
    "CustomizedURL",
    // Generic spellings
    "Email",
    "EmailAddress",
    "PhoneNumber",
    "FirstName",
    "LastName",
    "FullName",
    "Zip",
    "ZipCode",
    "IpAddress",
    "ClientIp",
    // Credentials
    "Password",
    "Token",
    "AccessToken",
    "RefreshToken",
    "ClientSecret",
    "ApiKey",
    "Secret",
];

/// Normalises a key for comparison.
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A set of PII key names.
#[derive(Debug, Clone)]
pub struct PiiKeys(BTreeSet<String>);

impl Default for PiiKeys {
    fn default() -> Self {
        PiiKeys(BUILT_IN.iter().map(|k| normalize(k)).collect())
    }
}

impl PiiKeys {
    /// The built-in names plus `extra` (policy selector leaves, `logging.pii_keys`).
    pub fn with_extra<I, S>(extra: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys = PiiKeys::default();
        for k in extra {
            let n = normalize(k.as_ref());
            if !n.is_empty() {
                keys.0.insert(n);
            }
        }
        keys
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(&normalize(name))
    }

    /// A key as written in a query string or text: the whole name, or any
    /// part of a bracketed or dotted name (`filter[BuyerName]`,
    /// `BuyerName[]`, `buyer.email`), as frameworks (Rails, PHP, qs)
    /// read `a[b]=v` as the field `b` of `a`.
    pub fn contains_key_expr(&self, name: &str) -> bool {
        self.contains(name)
            || name
                .split(['[', ']', '.'])
                .any(|part| !part.is_empty() && self.contains(part))
    }

    /// Header names carry no vendor prefix in the models: `x-buyer-email`
    /// is the `BuyerEmail` key.
    pub fn contains_header(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        self.contains(lower.strip_prefix("x-").unwrap_or(&lower))
    }
}
