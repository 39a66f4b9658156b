"""Selling Partner API Orders payloads (public model shapes) with made-up PII.

`pii_values(doc)` lists every PII value of a payload by walking it with the
PII member names of the Orders models, independently of the filter's own
preset, so a test that searches a record value by value checks the preset
instead of repeating it.
"""
from __future__ import annotations

import json
from typing import Any

ORDER_ID = "902-3159896-1390916"

SHIPPING_ADDRESS = {
    "Name": "Jane Q. Buyer", "CompanyName": "Buyer Holdings GmbH",
    "AddressLine1": "1200 Westlake Ave N", "AddressLine2": "Suite 1400", "AddressLine3": "c/o Mailroom",
    "City": "Seattle", "County": "King", "District": "Westlake", "StateOrRegion": "WA",
    "Municipality": "Seattle City", "PostalCode": "98109-5210", "CountryCode": "US",
    "Phone": "+1 206-555-0147", "AddressType": "Residential",
    "ExtendedFields": {"StreetName": "Westlake Ave N", "StreetNumber": "1200",
                       "Complement": "Floor 14", "Neighborhood": "South Lake Union"},
}

BUYER_INFO = {
    "BuyerEmail": "jq7f2k9x@marketplace.example.com", "BuyerName": "Jane Q. Buyer",
    "BuyerCounty": "King County", "PurchaseOrderNumber": "PO-77-3921",
    "BuyerTaxInfo": {"CompanyLegalName": "Buyer Holdings GmbH", "TaxingRegion": "WA",
                     "TaxClassifications": [{"Name": "VATNumber", "Value": "DE812345678"}]},
}

# getOrder: the order is the payload itself.
GET_ORDER = {"payload": {
    "AmazonOrderId": ORDER_ID, "PurchaseDate": "2026-11-20T17:04:51Z", "OrderStatus": "Unshipped",
    "FulfillmentChannel": "MFN", "NumberOfItemsShipped": 0, "NumberOfItemsUnshipped": 2,
    "OrderTotal": {"CurrencyCode": "USD", "Amount": "64.98"}, "IsPrime": False,
    "MarketplaceId": "ATVPDKIKX0DER", "ShipmentServiceLevelCategory": "Standard",
    "BuyerInfo": BUYER_INFO, "ShippingAddress": SHIPPING_ADDRESS,
    "BuyerTaxInformation": {"BuyerLegalCompanyName": "Buyer Holdings GmbH",
                            "BuyerBusinessAddress": "Unter den Linden 5, 10117 Berlin",
                            "BuyerTaxRegistrationId": "DE812345678", "BuyerTaxOffice": "Finanzamt Mitte"},
    "DefaultShipFromLocationAddress": {"Name": "Seller Warehouse 3", "AddressLine1": "77 Depot Rd",
                                       "City": "Tacoma", "PostalCode": "98402", "Phone": "+1 253-555-0199"},
    "AutomatedShippingSettings": {"HasAutomatedShippingSettings": False},
}}

# getOrderAddress
GET_ORDER_ADDRESS = {"payload": {
    "AmazonOrderId": ORDER_ID, "BuyerCompanyName": "Buyer Holdings GmbH",
    "ShippingAddress": SHIPPING_ADDRESS,
    "DeliveryPreferences": {"DropOffLocation": "Behind the blue gate", "AddressInstructions": "Ring twice, ask for Jane",
                            "PreferredDeliveryTime": {"BusinessHours": [{"DayOfWeek": "MON"}]}},
}}

# getOrderBuyerInfo
GET_ORDER_BUYER_INFO = {"payload": {"AmazonOrderId": ORDER_ID, **BUYER_INFO}}

# getOrderItems (with the buyer info of getOrderItemsBuyerInfo inside each item)
GET_ORDER_ITEMS = {"payload": {"AmazonOrderId": ORDER_ID, "OrderItems": [
    {"ASIN": "B00EXAMPLE", "OrderItemId": "68828574383266", "SellerSKU": "SKU-1", "QuantityOrdered": 1,
     "ItemPrice": {"CurrencyCode": "USD", "Amount": "39.99"},
     "BuyerInfo": {"GiftMessageText": "Happy birthday, Sam! Love, Jane", "GiftWrapLevel": "Classic",
                   "BuyerCustomizedInfo": {"CustomizedURL": "https://customization.example.com/jq7f2k9x/engraving"}}},
    {"ASIN": "B00OTHER01", "OrderItemId": "68828574383267", "SellerSKU": "SKU-2", "QuantityOrdered": 1,
     "ItemPrice": {"CurrencyCode": "USD", "Amount": "24.99"},
     "BuyerInfo": {"GiftMessageText": "For the new flat, 12 Elm Row"}},
]}}

OPERATIONS = {
    "getOrder": (f"/orders/v0/orders/{ORDER_ID}", GET_ORDER),
    "getOrderAddress": (f"/orders/v0/orders/{ORDER_ID}/address", GET_ORDER_ADDRESS),
    "getOrderBuyerInfo": (f"/orders/v0/orders/{ORDER_ID}/buyerInfo", GET_ORDER_BUYER_INFO),
    "getOrderItems": (f"/orders/v0/orders/{ORDER_ID}/orderItems", GET_ORDER_ITEMS),
}

# Member names whose values are PII in the Orders v0 models (names,
# addresses, e-mail, phone, gift messages, tax identities).
_PII_MEMBERS = {
    "BuyerEmail", "BuyerName", "BuyerCounty", "PurchaseOrderNumber", "CompanyLegalName", "Value",
    "Name", "CompanyName", "AddressLine1", "AddressLine2", "AddressLine3", "City", "County", "District",
    "StateOrRegion", "Municipality", "PostalCode", "Phone", "StreetName", "StreetNumber", "Complement",
    "Neighborhood", "BuyerLegalCompanyName", "BuyerBusinessAddress", "BuyerTaxRegistrationId",
    "BuyerTaxOffice", "BuyerCompanyName", "DropOffLocation", "AddressInstructions", "GiftMessageText",
    "CustomizedURL",
}
# Members whose every value below is PII.
_PII_SUBTREES = {"ShippingAddress", "DefaultShipFromLocationAddress"}
# Shorter values are not searched: they could occur by chance in base64
# ciphertext or in a header (a 4-digit content-length).
_MIN_LEN = 5


def pii_values(doc: Any, inside: bool = False) -> set[str]:
    out: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            sub = inside or k in _PII_SUBTREES
            if isinstance(v, (dict, list)):
                out |= pii_values(v, sub)
            elif (sub or (k in _PII_MEMBERS and k != "Name")) and k not in ("CountryCode", "AddressType"):
                if v is not None and len(str(v)) >= _MIN_LEN:
                    out.add(str(v))
    elif isinstance(doc, list):
        for v in doc:
            out |= pii_values(v, inside)
    return out


def leaks(record: bytes, doc: Any) -> list[str]:
    """PII values of `doc` found in `record`, in JSON-escaped and raw form."""
    found = []
    for value in sorted(pii_values(doc)):
        forms = {value.encode(), json.dumps(value)[1:-1].encode()}
        if any(f in record for f in forms):
            found.append(value)
    return found
