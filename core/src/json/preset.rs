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

/// Names of the presets this build knows.
pub const PRESETS: &[&str] = &["sp-api-orders"];

/// The selectors of a preset, or `None` for an unknown name.
pub fn selectors(name: &str) -> Option<Vec<String>> {
    if name != "sp-api-orders" {
        return None;
    }
    let mut out = Vec::new();
    // v0: getOrders lists orders under payload.Orders, getOrder returns the
    // order as the payload itself.
    for order in ["$.payload.Orders[*]", "$.payload"] {
        out.extend(V0_ORDER.iter().map(|f| format!("{order}{f}")));
    }
    out.extend(V0_OTHER.iter().map(|s| s.to_string()));
    // 2026-01-01: searchOrders lists `orders`, getOrder wraps one `order`.
    for order in ["$.orders[*]", "$.order"] {
        out.extend(V2026_ORDER.iter().map(|f| format!("{order}{f}")));
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
}
