-- v4: how far the station has checked its own chain (outside the chain: the station's own note,
-- not evidence), so a start checks signatures only of the events after it. Key-declaring events
-- are found by kind.
CREATE TABLE chain_checked (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    seq        INTEGER NOT NULL,
    hash       TEXT    NOT NULL,
    public_key TEXT    NOT NULL
);
CREATE INDEX events_by_kind ON events (kind);
