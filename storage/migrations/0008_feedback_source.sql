-- Rewards for adopted suggestions get a source account and an operation kind of their own
-- ('feedback'), so a member's statement and the audit trail say what the points were for.
-- Rewards approved before this migration stay booked as 'survey' operations: operations
-- never change (0002_ledger.sql); the audit accepts either kind for a suggestion's reward.
INSERT INTO accounts (kind, name) VALUES ('source', 'feedback');
