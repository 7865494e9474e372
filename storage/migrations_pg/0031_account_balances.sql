-- No hot row: only member accounts keep a cached running balance. A source or sink account
-- (one row that every purchase, every redemption touched) made concurrent writers queue on
-- it and SERIALIZABLE transactions conflict on it; its balance is summed from its postings
-- (the postings_by_account index) by the account_balances view instead. Its cached column
-- stays 0 from here on (the copy from SQLite, storage/pg_copy.py, writes 0 there too), and
-- the sink CHECK it carried is the audit's (sink_not_negative, on the view).
UPDATE accounts SET balance = 0 WHERE kind <> 'member';

CREATE OR REPLACE FUNCTION postings_maintain_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET balance = balance + NEW.amount
     WHERE id = NEW.account_id AND kind = 'member';
    RETURN NULL;
END;
$$;

CREATE VIEW account_balances AS
    SELECT a.id, a.kind, a.name, a.member_id,
           CASE WHEN a.kind = 'member' THEN a.balance
                ELSE coalesce((SELECT sum(p.amount) FROM postings AS p
                                WHERE p.account_id = a.id), 0)::bigint
           END AS balance
      FROM accounts AS a;

-- json_type(doc, '$.a'): SQLite's type name of the value at a path ('integer', 'real', 'text',
-- 'true', 'false', 'null', 'object', 'array'; NULL when absent), for the audit's checks that a
-- stored figure is a whole number.
CREATE FUNCTION json_type(doc text, path text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN json_type((doc::jsonb #> string_to_array(substr(path, 3), '.'))::text);
