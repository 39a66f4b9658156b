"""Deterministic SP-API order bodies for the benchmarks.

The shape follows the Selling Partner API Orders v0 model (Order, BuyerInfo,
ShippingAddress, OrderItems). Every value is generated here from a fixed
seed: the PII is made up, never copied from anywhere.
"""

import json
import random

# Fields of one order that the Data Protection Policy treats as PII
# (buyer identity, contact, address). Paths are relative to one order; `*`
# walks an array. The sp-api-orders preset of dpp-guard selects these.
ORDER_PII_FIELDS = [
    "BuyerInfo.BuyerEmail",
    "BuyerInfo.BuyerName",
    "BuyerInfo.BuyerCounty",
    "BuyerInfo.PurchaseOrderNumber",
    "BuyerInfo.BuyerTaxInfo.CompanyLegalName",
    "ShippingAddress.Name",
    "ShippingAddress.AddressLine1",
    "ShippingAddress.AddressLine2",
    "ShippingAddress.AddressLine3",
    "ShippingAddress.City",
    "ShippingAddress.County",
    "ShippingAddress.District",
    "ShippingAddress.StateOrRegion",
    "ShippingAddress.PostalCode",
    "ShippingAddress.Phone",
]

_FIRST = ["Maria", "Jonas", "Aiko", "Pedro", "Lena", "Omar", "Chen", "Sofia", "Ravi", "Ella"]
_LAST = ["Schmidt", "Okafor", "Tanaka", "Silva", "Novak", "Haddad", "Li", "Rossi", "Iyer", "Berg"]
_STREETS = ["Maple Ave", "Hauptstrasse", "Rue de Lyon", "Calle Mayor", "Elm St", "Via Roma"]
_CITIES = ["Springfield", "Leipzig", "Lyon", "Valencia", "Portland", "Bologna"]


def _order(rng, i, n_items=3):
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    oid = f"{rng.randint(100, 999)}-{rng.randint(1000000, 9999999)}-{rng.randint(1000000, 9999999)}"
    items = []
    for k in range(n_items):
        items.append(
            {
                "ASIN": f"B0{rng.randint(10000000, 99999999)}",
                "SellerSKU": f"SKU-{i}-{k}-{rng.randint(1000, 9999)}",
                "OrderItemId": str(rng.randint(10**13, 10**14 - 1)),
                "Title": "Stainless steel insulated water bottle, 750 ml, leak-proof lid",
                "QuantityOrdered": rng.randint(1, 4),
                "QuantityShipped": 0,
                "ItemPrice": {"CurrencyCode": "EUR", "Amount": f"{rng.randint(5, 90)}.99"},
                "ItemTax": {"CurrencyCode": "EUR", "Amount": f"{rng.randint(1, 9)}.40"},
                "ShippingPrice": {"CurrencyCode": "EUR", "Amount": "4.99"},
                "PromotionDiscount": {"CurrencyCode": "EUR", "Amount": "0.00"},
                "IsGift": "false",
                "ConditionId": "New",
                "IsTransparency": False,
                "ProductInfo": {"NumberOfItems": "1"},
            }
        )
    return {
        "AmazonOrderId": oid,
        "SellerOrderId": f"SO-{i:06d}",
        "PurchaseDate": "2026-11-27T10:15:42Z",
        "LastUpdateDate": "2026-11-27T10:48:03Z",
        "OrderStatus": "Unshipped",
        "FulfillmentChannel": "MFN",
        "SalesChannel": "Amazon.de",
        "ShipServiceLevel": "Std DE Dom",
        "OrderTotal": {"CurrencyCode": "EUR", "Amount": f"{rng.randint(20, 300)}.97"},
        "NumberOfItemsShipped": 0,
        "NumberOfItemsUnshipped": 3,
        "PaymentMethod": "Other",
        "PaymentMethodDetails": ["Standard"],
        "MarketplaceId": "A1PA6795UKMFR9",
        "ShipmentServiceLevelCategory": "Standard",
        "OrderType": "StandardOrder",
        "EarliestShipDate": "2026-11-28T23:00:00Z",
        "LatestShipDate": "2026-11-30T22:59:59Z",
        "IsBusinessOrder": False,
        "IsPrime": False,
        "IsPremiumOrder": False,
        "IsGlobalExpressEnabled": False,
        "IsReplacementOrder": False,
        "IsSoldByAB": False,
        "IsISPU": False,
        "IsAccessPointOrder": False,
        "HasRegulatedItems": False,
        "BuyerInfo": {
            "BuyerEmail": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@marketplace.example",
            "BuyerName": f"{first} {last}",
            "BuyerCounty": "Sachsen",
            "BuyerTaxInfo": {"CompanyLegalName": f"{last} Handel GmbH"},
            "PurchaseOrderNumber": f"PO-{rng.randint(10000, 99999)}",
        },
        "ShippingAddress": {
            "Name": f"{first} {last}",
            "AddressLine1": f"{rng.randint(1, 200)} {rng.choice(_STREETS)}",
            "AddressLine2": f"Apt {rng.randint(1, 60)}",
            "AddressLine3": "c/o Reception",
            "City": rng.choice(_CITIES),
            "County": "Leipzig",
            "District": "Mitte",
            "StateOrRegion": "SN",
            "PostalCode": f"{rng.randint(10000, 99999)}",
            "CountryCode": "DE",
            "Phone": f"+49 341 {rng.randint(1000000, 9999999)}",
            "AddressType": "Residential",
        },
        "OrderItems": items,
    }


def order_document(seed=8):
    """One order wrapped as the getOrder payload: about 4 KiB of JSON."""
    rng = random.Random(seed)
    return {"payload": _order(rng, 0, n_items=5)}


def orders_document(target_bytes, seed=8):
    """A getOrders-style payload with as many orders as fit `target_bytes`."""
    rng = random.Random(seed)
    orders = []
    doc = {"payload": {"Orders": orders, "NextToken": "bench"}}
    size = len(json.dumps(doc, separators=(",", ":")))
    i = 0
    while True:
        o = _order(rng, i, n_items=1)
        n = len(json.dumps(o, separators=(",", ":"))) + 1
        if orders and size + n > target_bytes:
            break
        orders.append(o)
        size += n
        i += 1
    # Below one order: drop non-PII keys until the body fits.
    droppable = [k for k in orders[0] if k not in ("BuyerInfo", "ShippingAddress", "AmazonOrderId")]
    while len(json.dumps(doc, separators=(",", ":"))) > target_bytes and droppable:
        orders[0].pop(droppable.pop())
    return doc


def dumps(doc):
    return json.dumps(doc, separators=(",", ":")).encode()


def pii_values(doc):
    """Every string value under a PII path, for checking that none leaks."""
    out = []

    def walk(v, path):
        if not path:
            if isinstance(v, str):
                out.append(v)
            return
        head, rest = path[0], path[1:]
        if head == "*" and isinstance(v, list):
            for x in v:
                walk(x, rest)
        elif isinstance(v, dict) and head in v:
            walk(v[head], rest)

    payload = doc["payload"]
    orders = payload["Orders"] if "Orders" in payload else [payload]
    for o in orders:
        for f in ORDER_PII_FIELDS:
            walk(o, f.split("."))
    return out


if __name__ == "__main__":
    print(len(dumps(order_document())), "bytes, one order")
    for kib in (1, 16, 256, 1024):
        print(kib, "KiB target ->", len(dumps(orders_document(kib * 1024))), "bytes")
