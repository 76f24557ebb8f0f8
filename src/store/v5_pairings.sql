-- v5: one-time pairing codes (`loa token create --pair`): only the code's SHA-256, the role and
-- label of the token it will make, and when it expires. The token itself is made, and shown
-- once, only when the code is redeemed: no secret is ever stored.
CREATE TABLE pairings (
    id          INTEGER PRIMARY KEY,
    code_sha256 TEXT    NOT NULL UNIQUE CHECK (length(code_sha256) = 64),
    role        TEXT    NOT NULL CHECK (role IN ('operator', 'district')),
    label       TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    token_id    INTEGER REFERENCES tokens (id)
);
