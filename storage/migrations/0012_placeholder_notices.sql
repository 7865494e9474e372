-- A placeholder so this branch (h16-notices) migrates: 0012 belongs to another helper of
-- issue 16. Delete this file when their 0012 is merged.
SELECT 1;
