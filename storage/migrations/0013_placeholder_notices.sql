-- A placeholder so this branch (h16-notices) migrates: 0013 belongs to another helper of
-- issue 16. Delete this file when their 0013 is merged.
SELECT 1;
