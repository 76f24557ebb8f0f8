-- v1: the clip library. Clips are never deleted: proof records will refer to them for years.
CREATE TABLE clips (
    id             INTEGER PRIMARY KEY,
    sha256         TEXT    NOT NULL UNIQUE CHECK (length(sha256) = 64),
    title          TEXT    NOT NULL CHECK (length(trim(title)) > 0),
    topic          TEXT    NOT NULL,
    language       TEXT    NOT NULL,
    priority       TEXT    NOT NULL CHECK (priority IN ('normal', 'priority', 'emergency')),
    valid_from     TEXT,
    valid_until    TEXT,
    duration_ms    INTEGER NOT NULL CHECK (duration_ms > 0),
    sample_rate    INTEGER NOT NULL,
    channels       INTEGER NOT NULL,
    loudness_lufs  REAL    NOT NULL,
    peak_dbfs      REAL    NOT NULL,
    true_peak_dbfs REAL    NOT NULL,
    size_bytes     INTEGER NOT NULL,
    created_at     TEXT    NOT NULL,
    retired_at     TEXT
);
CREATE TRIGGER clips_are_never_deleted BEFORE DELETE ON clips
BEGIN
    SELECT RAISE(ABORT, 'clips are never deleted; retire them instead');
END;
