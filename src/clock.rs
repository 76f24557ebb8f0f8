//! The one place that reads the wall clock.
//!
//! "Now" is an input: everything that stamps a record or decides what to air asks a
//! [`Clock`], so tests can run on a clock they move by hand instead of waiting for real time.

use chrono::{DateTime, SubsecRound, Utc};

pub trait Clock: Send + Sync {
    /// Current instant, truncated to milliseconds (the precision every record keeps).
    fn now(&self) -> DateTime<Utc>;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(3)
    }
}
