-- v3: API tokens (only their SHA-256 is kept) and the operators' queue of bulletins to air
-- in the next slot or at once.
CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    role         TEXT    NOT NULL CHECK (role IN ('operator', 'district')),
    label        TEXT    NOT NULL,
    token_sha256 TEXT    NOT NULL UNIQUE CHECK (length(token_sha256) = 64),
    created_at   TEXT    NOT NULL,
    revoked_at   TEXT
);
CREATE TABLE queue (
    id         INTEGER PRIMARY KEY,
    clip_id    INTEGER NOT NULL REFERENCES clips (id),
    wanted     TEXT    NOT NULL CHECK (wanted IN ('next_slot', 'now')),
    created_at TEXT    NOT NULL,
    taken_at   TEXT
);
CREATE INDEX queue_pending ON queue (wanted, id) WHERE taken_at IS NULL;
