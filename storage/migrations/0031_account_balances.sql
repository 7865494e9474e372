-- Every account's balance, where the code reads a system account's: the same on both
-- engines. Here (SQLite, one writer) the cached column is exact for every account. On
-- PostgreSQL (migrations_pg/0031) only member accounts keep a cached balance, since one
-- row updated by every purchase ("purchase", the source) would make every earning wait for
-- every other; a source's or sink's balance is summed from its postings there.
CREATE VIEW account_balances AS
    SELECT id, kind, name, member_id, balance FROM accounts;
