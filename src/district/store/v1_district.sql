-- The office's memory of the stations it audits (src/district/store.rs).
CREATE TABLE stations (
    id TEXT PRIMARY KEY,
    head_seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    -- the key in force after the head
    key TEXT NOT NULL,
    last_ok_at INTEGER,
    enrolled_at INTEGER NOT NULL
);

-- Verified events, as the station signed them: append-only.
CREATE TABLE events (
    station_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    -- the event's own `at` (UTC ms) and `kind`, for reports by period
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL,
    sig TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (station_id, seq)
) WITHOUT ROWID;
CREATE INDEX events_by_kind_and_time ON events (station_id, kind, at);
CREATE TRIGGER events_are_never_updated BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'held events are append-only');
END;
CREATE TRIGGER events_are_never_deleted BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'held events are append-only');
END;

-- Alarms are never deleted; an acknowledgement is written once and kept beside the alarm.
CREATE TABLE alarms (
    id INTEGER PRIMARY KEY,
    station_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER,
    detail TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    acknowledged_at INTEGER,
    note TEXT
);
CREATE INDEX alarms_by_station ON alarms (station_id, acknowledged_at);
CREATE TRIGGER alarms_are_never_deleted BEFORE DELETE ON alarms
BEGIN
    SELECT RAISE(ABORT, 'alarms are kept');
END;
CREATE TRIGGER alarms_change_only_by_acknowledgement BEFORE UPDATE ON alarms
WHEN OLD.acknowledged_at IS NOT NULL
    OR NEW.id IS NOT OLD.id OR NEW.station_id IS NOT OLD.station_id OR NEW.kind IS NOT OLD.kind
    OR NEW.seq IS NOT OLD.seq OR NEW.detail IS NOT OLD.detail OR NEW.raised_at IS NOT OLD.raised_at
    OR NEW.acknowledged_at IS NULL OR NEW.note IS NULL
BEGIN
    SELECT RAISE(ABORT, 'an alarm changes only by its one acknowledgement');
END;

-- What an alarm is about, as received (a fork's other event).
CREATE TABLE evidence (
    id INTEGER PRIMARY KEY,
    alarm_id INTEGER NOT NULL REFERENCES alarms (id),
    line TEXT NOT NULL
);
CREATE TRIGGER evidence_is_kept BEFORE DELETE ON evidence
BEGIN
    SELECT RAISE(ABORT, 'evidence is kept');
END;

-- Tokens the office made, as SHA-256: `push` (a station's, owner = its id) and `clerk` (may
-- acknowledge alarms on the dashboard, owner = the clerk's name). Revoked, never deleted.
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('push', 'clerk')),
    owner TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
