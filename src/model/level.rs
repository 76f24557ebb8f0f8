//! Levels in decibels: one home for amplitude → dBFS and for rounding to hundredths of a dB,
//! so what ingest measured and what an airing record signs are computed the same way.

/// Levels below -120 dBFS are recorded as -120 dBFS (JSON has no -∞).
pub const FLOOR_CDBFS: i64 = -12_000;

/// An amplitude (1.0 = full scale) in dBFS; silence is -∞.
pub fn dbfs(amplitude: f64) -> f64 {
    if amplitude > 0.0 { 20.0 * amplitude.log10() } else { f64::NEG_INFINITY }
}

/// dB in hundredths, rounded: what signed events hold (integers, so no verifier depends on
/// how a library writes a float).
pub fn centi(db: f64) -> i64 {
    (db * 100.0).round() as i64
}

/// dB rounded to hundredths, kept as a float (a clip's measured facts).
pub fn hundredths(db: f64) -> f64 {
    (db * 100.0).round() / 100.0
}

/// An amplitude in hundredths of a dBFS, floored at [`FLOOR_CDBFS`].
pub fn level_cdbfs(amplitude: f64) -> i64 {
    if amplitude > 0.0 { centi(dbfs(amplitude)).max(FLOOR_CDBFS) } else { FLOOR_CDBFS }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scale_half_and_silence() {
        assert_eq!((level_cdbfs(1.0), level_cdbfs(0.5), level_cdbfs(0.0)), (0, -602, FLOOR_CDBFS));
        assert_eq!(level_cdbfs(1e-9), FLOOR_CDBFS, "below the floor is the floor");
        assert_eq!((hundredths(-16.004), centi(-16.005)), (-16.0, -1601));
        assert_eq!(dbfs(0.0), f64::NEG_INFINITY);
    }
}
