-- A redeemed voucher's last valid day (storage/mall.py redeem): the programme's local day
-- (ISO 'YYYY-MM-DD'), usable through 23:59:59 local time of that day; NULL = no limit. It is
-- fixed at the redeeming instant from the item's terms, so a later change of the terms never
-- shortens (or lengthens) a voucher a member already holds.
ALTER TABLE redemptions ADD COLUMN valid_until TEXT
    CHECK (valid_until IS NULL OR date(valid_until) IS valid_until);

-- What the daily voucher job scans: usable vouchers by their last day.
CREATE INDEX redemptions_usable_until ON redemptions (valid_until)
    WHERE valid_until IS NOT NULL AND status IN ('issued', 'return_rejected');

CREATE TRIGGER redemptions_fixed_validity BEFORE UPDATE OF valid_until ON redemptions
WHEN NEW.valid_until IS NOT OLD.valid_until
BEGIN
    SELECT RAISE(ABORT, 'a voucher''s validity never changes');
END;
