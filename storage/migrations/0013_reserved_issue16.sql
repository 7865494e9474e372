-- Reserved: issue 16 gave this number to another helper's migration. This placeholder only
-- keeps the sequence unbroken on the h16-expiry branch; the merge replaces it.
SELECT 1;
