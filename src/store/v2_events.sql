-- v2: the proof log. Append-only: triggers refuse every UPDATE and DELETE. `body` is the
-- canonical encoding that `hash` covers; the other columns are read out of it for queries.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY CHECK (seq > 0),
    body         TEXT    NOT NULL CHECK (json_valid(body)),
    hash         TEXT    NOT NULL UNIQUE CHECK (length(hash) = 64),
    sig          TEXT    NOT NULL CHECK (length(sig) = 128),
    kind         TEXT    GENERATED ALWAYS AS (json_extract(body, '$.kind')) VIRTUAL,
    at           INTEGER GENERATED ALWAYS AS (json_extract(body, '$.at')) VIRTUAL,
    slot         TEXT    GENERATED ALWAYS AS (json_extract(body, '$.slot')) VIRTUAL,
    scheduled_at INTEGER GENERATED ALWAYS AS (json_extract(body, '$.scheduled_at')) VIRTUAL,
    clip_id      INTEGER GENERATED ALWAYS AS (json_extract(body, '$.clip_id')) VIRTUAL,
    status       TEXT    GENERATED ALWAYS AS (json_extract(body, '$.status')) VIRTUAL,
    airing_seq   INTEGER GENERATED ALWAYS AS (json_extract(body, '$.airing_seq')) VIRTUAL
);
CREATE INDEX events_by_time ON events (at);
CREATE INDEX events_by_slot ON events (slot, scheduled_at) WHERE slot IS NOT NULL;
CREATE INDEX events_by_clip ON events (clip_id, kind, status) WHERE clip_id IS NOT NULL;
CREATE INDEX events_by_airing ON events (airing_seq) WHERE airing_seq IS NOT NULL;
CREATE TRIGGER events_are_never_updated BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'proof events are append-only');
END;
CREATE TRIGGER events_are_never_deleted BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'proof events are append-only');
END;

-- Liveness, outside the chain: when the daemon was last alive, and how far the airing in
-- progress had played (measured), so recovery after a power cut can say so.
CREATE TABLE heartbeat (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    at         INTEGER NOT NULL,
    airing_seq INTEGER,
    played_ms  INTEGER
);
