-- A redeemed voucher's last valid day (storage/mall.py redeem): the programme's local day
-- (ISO 'YYYY-MM-DD'), usable through 23:59:59 local time of that day; NULL = no limit. It is
-- fixed at the redeeming instant from the item's terms, so a later change of the terms never
-- shortens (or lengthens) a voucher a member already holds.
ALTER TABLE redemptions ADD COLUMN valid_until TEXT
    CHECK (valid_until IS NULL OR date(valid_until) IS valid_until);

-- Whether the item's terms, when it was redeemed, gave the points of a code that lapses unused
-- back: a promise made at redemption outlives a later change of the terms.
ALTER TABLE redemptions ADD COLUMN refund_if_unused INTEGER NOT NULL DEFAULT 0
    CHECK (refund_if_unused IN (0, 1) AND (refund_if_unused = 0 OR valid_until IS NOT NULL));

-- What the daily voucher job scans: usable vouchers by their last day.
CREATE INDEX redemptions_usable_until ON redemptions (valid_until)
    WHERE valid_until IS NOT NULL AND status IN ('issued', 'return_rejected');

CREATE TRIGGER redemptions_fixed_validity
    BEFORE UPDATE OF valid_until, refund_if_unused ON redemptions
WHEN NEW.valid_until IS NOT OLD.valid_until OR NEW.refund_if_unused IS NOT OLD.refund_if_unused
BEGIN
    SELECT RAISE(ABORT, 'a voucher''s validity and terms never change');
END;
