//! Built-in selector presets.
//!
//! `sp-api-orders`: every PII field of the Selling Partner API Orders
//! models, v0 (getOrders, getOrder, getOrderBuyerInfo, getOrderAddress,
//! getOrderItems, getOrderItemsBuyerInfo, getOrderRegulatedInfo) and
//! 2026-01-01, per the policy's definition of PII (names, addresses,
//! e-mail, phone, gift messages, tax identities of buyers and sellers).

/// v0 order-level fields, relative to an order object.
const V0_ORDER: &[&str] = &[
    ".BuyerInfo.BuyerEmail",
    ".BuyerInfo.BuyerName",
    ".BuyerInfo.BuyerCounty",
    ".BuyerInfo.PurchaseOrderNumber",
    ".BuyerInfo.BuyerTaxInfo.CompanyLegalName",
    ".BuyerInfo.BuyerTaxInfo.TaxClassifications[*].Value",
    ".ShippingAddress.Name",
    ".ShippingAddress.CompanyName",
    ".ShippingAddress.AddressLine1",
    ".ShippingAddress.AddressLine2",
    ".ShippingAddress.AddressLine3",
    ".ShippingAddress.City",
    ".ShippingAddress.County",
    ".ShippingAddress.District",
    ".ShippingAddress.StateOrRegion",
    ".ShippingAddress.Municipality",
    ".ShippingAddress.PostalCode",
    ".ShippingAddress.Phone",
    ".ShippingAddress.ExtendedFields.StreetName",
    ".ShippingAddress.ExtendedFields.StreetNumber",
    ".ShippingAddress.ExtendedFields.Complement",
    ".ShippingAddress.ExtendedFields.Neighborhood",
    ".ShippingAddress.ExtendedFields.GeoCoordinates",
    ".BuyerTaxInformation.BuyerLegalCompanyName",
    ".BuyerTaxInformation.BuyerBusinessAddress",
    ".BuyerTaxInformation.BuyerTaxRegistrationId",
    ".BuyerTaxInformation.BuyerTaxOffice",
    ".DefaultShipFromLocationAddress.*",
];

/// Fields of the v0 operations whose payload is not an order.
const V0_OTHER: &[&str] = &[
    // getOrderBuyerInfo
    "$.payload.BuyerEmail",
    "$.payload.BuyerName",
    "$.payload.BuyerCounty",
    "$.payload.BuyerTaxInfo.*",
    "$.payload.PurchaseOrderNumber",
    // getOrderAddress
    "$.payload.BuyerCompanyName",
    "$.payload.ShippingAddress.*",
    "$.payload.DeliveryPreferences.DropOffLocation",
    "$.payload.DeliveryPreferences.AddressInstructions",
    // getOrderItems / getOrderItemsBuyerInfo
    "$.payload.OrderItems[*].BuyerInfo.GiftMessageText",
    "$.payload.OrderItems[*].BuyerInfo.BuyerCustomizedInfo.CustomizedURL",
    "$.payload.OrderItems[*].GiftMessageText",
    "$.payload.OrderItems[*].BuyerCustomizedInfo.CustomizedURL",
    // getOrderRegulatedInfo
    "$.payload.RegulatedInformation.Fields[*].FieldValue",
];

/// 2026-01-01 fields, relative to an order object.
const V2026_ORDER: &[&str] = &[
    ".buyer.buyerName",
    ".buyer.buyerEmail",
    ".buyer.buyerCompanyName",
    ".buyer.buyerPurchaseOrderNumber",
    ".recipient.deliveryAddress.name",
    ".recipient.deliveryAddress.companyName",
    ".recipient.deliveryAddress.addressLine1",
    ".recipient.deliveryAddress.addressLine2",
    ".recipient.deliveryAddress.addressLine3",
    ".recipient.deliveryAddress.city",
    ".recipient.deliveryAddress.districtOrCounty",
    ".recipient.deliveryAddress.stateOrRegion",
    ".recipient.deliveryAddress.municipality",
    ".recipient.deliveryAddress.postalCode",
    ".recipient.deliveryAddress.phone",
    ".recipient.deliveryAddress.extendedFields.*",
    ".recipient.deliveryPreference.dropOffLocation",
    ".recipient.deliveryPreference.addressInstruction",
    ".tax.taxRegistrations[*].legalName",
    ".tax.taxRegistrations[*].taxRegistrationNumber",
    ".tax.taxRegistrations[*].taxRegistrationAddress.*",
    ".orderItems[*].fulfillment.packing.giftOption.giftMessage",
];

/// Object granularity: each PII object of the models sealed whole, relative
/// to an order (v0). Non-PII members of these objects (`CountryCode`,
/// `AddressType`, `TaxingRegion`, gift-wrap prices) are sealed with them.
const V0_ORDER_OBJECTS: &[&str] = &[
    ".BuyerInfo",
    ".ShippingAddress",
    ".BuyerTaxInformation",
    ".DefaultShipFromLocationAddress",
];

/// Object granularity, v0 operations whose payload is not an order.
const V0_OTHER_OBJECTS: &[&str] = &[
    "$.payload.BuyerEmail",
    "$.payload.BuyerName",
    "$.payload.BuyerCounty",
    "$.payload.BuyerTaxInfo",
    "$.payload.PurchaseOrderNumber",
    "$.payload.BuyerCompanyName",
    "$.payload.ShippingAddress",
    "$.payload.DeliveryPreferences.DropOffLocation",
    "$.payload.DeliveryPreferences.AddressInstructions",
    "$.payload.OrderItems[*].BuyerInfo",
    "$.payload.OrderItems[*].GiftMessageText",
    "$.payload.OrderItems[*].BuyerCustomizedInfo",
    "$.payload.RegulatedInformation.Fields[*].FieldValue",
];

/// Object granularity, 2026-01-01, relative to an order.
const V2026_ORDER_OBJECTS: &[&str] = &[
    ".buyer",
    ".recipient.deliveryAddress",
    ".recipient.deliveryPreference.dropOffLocation",
    ".recipient.deliveryPreference.addressInstruction",
    ".tax.taxRegistrations",
    ".orderItems[*].fulfillment.packing.giftOption.giftMessage",
];

/// Names of the presets this build knows.
pub const PRESETS: &[&str] = &["sp-api-orders"];

/// How finely a preset seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Granularity {
    /// Each PII member its own envelope (the default).
    #[default]
    Field,
    /// Each PII object (an address, a buyer-info block) one envelope.
    Object,
}

/// The selectors of a preset, or `None` for an unknown name.
pub fn selectors(name: &str) -> Option<Vec<String>> {
    selectors_with(name, Granularity::Field)
}

/// The selectors of a preset at a granularity, or `None` for an unknown name.
pub fn selectors_with(name: &str, granularity: Granularity) -> Option<Vec<String>> {
    if name != "sp-api-orders" {
        return None;
    }
    let (v0_order, v0_other, v2026_order) = match granularity {
        Granularity::Field => (V0_ORDER, V0_OTHER, V2026_ORDER),
        Granularity::Object => (V0_ORDER_OBJECTS, V0_OTHER_OBJECTS, V2026_ORDER_OBJECTS),
    };
    let mut out = Vec::new();
    // v0: getOrders lists orders under payload.Orders, getOrder returns the
    // order as the payload itself.
    for order in ["$.payload.Orders[*]", "$.payload"] {
        out.extend(v0_order.iter().map(|f| format!("{order}{f}")));
    }
    out.extend(v0_other.iter().map(|s| s.to_string()));
    // 2026-01-01: searchOrders lists `orders`, getOrder wraps one `order`.
    for order in ["$.orders[*]", "$.order"] {
        out.extend(v2026_order.iter().map(|f| format!("{order}{f}")));
    }
    out.sort();
    out.dedup();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::selector::Selector;

    #[test]
    fn every_preset_selector_parses() {
        let all = selectors("sp-api-orders").unwrap();
        assert!(all.len() > 80, "{}", all.len());
        for s in &all {
            Selector::parse(s).unwrap();
        }
        assert!(selectors("nope").is_none());
    }

    /// Every field the field preset selects lies inside something the
    /// object preset selects: object granularity never seals less.
    #[test]
    fn object_granularity_covers_every_field() {
        let objects = selectors_with("sp-api-orders", Granularity::Object).unwrap();
        for field in selectors("sp-api-orders").unwrap() {
            assert!(
                objects.iter().any(|o| field == *o
                    || field.starts_with(&format!("{o}."))
                    || field.starts_with(&format!("{o}["))),
                "{field} not covered"
            );
        }
    }
}
