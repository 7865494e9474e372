-- Sales ([[mall.discounts]] in the configuration) as the catalog keeps them, so the store
-- verifies an offer's price against the sale running at the moment it is redeemed, inside the
-- redeeming transaction (storage/mall.py: unit_price). One row per SKU a sale covers, with the
-- instants it runs between; every catalog sync rewrites them (the configuration is the source).
-- From this version a bill deduction's catalog_items.price is its points per yuan. Times are
-- Unix seconds.
CREATE TABLE catalog_discounts (
    sku       TEXT    NOT NULL REFERENCES catalog_items (sku),
    -- The sale's id in the configuration.
    discount  TEXT    NOT NULL,
    -- A sale takes something off and never everything: the price rule keeps at least 1 point.
    percent   INTEGER NOT NULL CHECK (percent BETWEEN 1 AND 99),
    starts_at INTEGER NOT NULL,
    -- The first instant the sale no longer runs (the local midnight after its last day).
    ends_at   INTEGER NOT NULL,
    CHECK (ends_at > starts_at),
    PRIMARY KEY (sku, discount)
) STRICT;
