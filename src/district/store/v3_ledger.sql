-- The office's own log (district/store/ledger.rs): every change to its memory, hash-chained and
-- signed with district.key, so an edit to any table is caught by `loa district check`.
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    hash TEXT NOT NULL,
    sig TEXT NOT NULL
);
CREATE TRIGGER ledger_is_never_updated BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the office log is append-only');
END;
CREATE TRIGGER ledger_is_never_deleted BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the office log is append-only');
END;
-- Tokens change only by revocation, once.
CREATE TRIGGER tokens_are_never_deleted BEFORE DELETE ON tokens
BEGIN
    SELECT RAISE(ABORT, 'tokens are kept');
END;
ALTER TABLE stations ADD COLUMN contact_logged_at INTEGER;
-- The challenge a station's next push must answer with its head signed over it (not evidence: a
-- fresh one is issued after every push).
ALTER TABLE stations ADD COLUMN push_challenge TEXT;
