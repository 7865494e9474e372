-- The signed till API (issue 17): a key per store, the nonces it signed with, and the first
-- answer to each purchase or return it booked (so a retry gets the very same answer). Times
-- are Unix seconds (UTC).

-- A store's key. The secret signs requests (HMAC-SHA256), so it is kept as issued: the
-- database is as confidential as the keys themselves. Revoking is for good.
CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY,
    key_id     TEXT    NOT NULL UNIQUE CHECK (key_id GLOB 'pk_*' AND length(key_id) BETWEEN 8 AND 64),
    store      TEXT    NOT NULL CHECK (length(store) BETWEEN 1 AND 64),
    secret     TEXT    NOT NULL CHECK (length(secret) >= 32),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER CHECK (revoked_at IS NULL OR revoked_at >= created_at)
) STRICT;

CREATE TRIGGER api_keys_fixed BEFORE UPDATE ON api_keys
WHEN NEW.id IS NOT OLD.id OR NEW.key_id IS NOT OLD.key_id OR NEW.store IS NOT OLD.store
    OR NEW.secret IS NOT OLD.secret OR NEW.created_at IS NOT OLD.created_at
    OR OLD.revoked_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'an API key is kept as issued and revoked once');
END;

CREATE TRIGGER api_keys_no_delete BEFORE DELETE ON api_keys
BEGIN
    SELECT RAISE(ABORT, 'API keys are kept (revoke one instead)');
END;

-- The nonce of every request whose signature checked out, with the instant it was signed at:
-- once signed_at is outside the clock skew window, a replay is refused as stale anyway, so
-- older rows are pruned.
CREATE TABLE api_nonces (
    key_ref   INTEGER NOT NULL REFERENCES api_keys (id),
    nonce     TEXT    NOT NULL CHECK (length(nonce) BETWEEN 8 AND 64),
    signed_at INTEGER NOT NULL,
    PRIMARY KEY (key_ref, nonce)
) STRICT, WITHOUT ROWID;

CREATE INDEX api_nonces_signed ON api_nonces (signed_at);

-- The first answer to a purchase (by receipt) or a purchase return (by return id) booked
-- through the API, with the fingerprint of the request it answered: the same request again
-- gets this answer, another one under the same receipt or return id is a conflict.
CREATE TABLE api_results (
    kind        TEXT    NOT NULL CHECK (kind IN ('purchase', 'purchase_return')),
    request_key TEXT    NOT NULL CHECK (length(request_key) BETWEEN 1 AND 64),
    key_ref     INTEGER NOT NULL REFERENCES api_keys (id),
    fingerprint TEXT    NOT NULL CHECK (length(fingerprint) = 64),
    result      TEXT    NOT NULL CHECK (json_valid(result)),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, request_key)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER api_results_no_update BEFORE UPDATE ON api_results
BEGIN
    SELECT RAISE(ABORT, 'API answers are kept as given');
END;

CREATE TRIGGER api_results_no_delete BEFORE DELETE ON api_results
BEGIN
    SELECT RAISE(ABORT, 'API answers are kept');
END;
