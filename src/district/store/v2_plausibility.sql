-- What the office remembers of each station's log for judging plausibility (district/plausible.rs),
-- moved on with its head.
ALTER TABLE stations ADD COLUMN plausibility TEXT NOT NULL DEFAULT '{}';

-- Held events the office does not believe (an airing dated ahead, overlapping another, while
-- stopped…): kept in the chain, never counted as aired. Append-only.
CREATE TABLE implausible (
    station_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    why TEXT NOT NULL,
    PRIMARY KEY (station_id, seq)
) WITHOUT ROWID;
CREATE TRIGGER implausible_is_never_updated BEFORE UPDATE ON implausible
BEGIN
    SELECT RAISE(ABORT, 'findings are append-only');
END;
CREATE TRIGGER implausible_is_never_deleted BEFORE DELETE ON implausible
BEGIN
    SELECT RAISE(ABORT, 'findings are append-only');
END;
