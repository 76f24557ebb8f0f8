//! The one place that reads the wall clock, and knows whether to trust it.
//!
//! "Now" is an input: everything that stamps a record or decides what to air asks a
//! [`Clock`], and waits through it, so tests run a [`VirtualClock`] they can step by hand or
//! jump across a year. Monotonic timers (`Instant`, tokio's timers) measure durations elsewhere;
//! only this module turns anything into a wall time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    /// Current instant, truncated to milliseconds (the precision every record keeps).
    fn now(&self) -> DateTime<Utc>;
    /// Whether the system says the clock is synchronised (NTP), recorded with every airing.
    fn synchronized(&self) -> bool;
    /// Waits `duration` of this clock's time.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(3)
    }

    fn synchronized(&self) -> bool {
        system_clock_synchronized()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// systemd-timesyncd's flag file when present; otherwise the kernel's view (`ntp_adjtime`),
/// which any NTP daemon (chrony, ntpd, timesyncd) keeps up to date.
fn system_clock_synchronized() -> bool {
    if std::path::Path::new("/run/systemd/timesync/synchronized").exists() {
        return true;
    }
    crate::ops::sys::kernel_clock_synchronized()
}

/// A clock that moves only when told to: `sleep` advances it at once.
#[derive(Debug)]
pub struct VirtualClock {
    now: Mutex<DateTime<Utc>>,
    synced: AtomicBool,
}

impl VirtualClock {
    pub fn new(start: DateTime<Utc>) -> VirtualClock {
        VirtualClock { now: Mutex::new(start.trunc_subsecs(3)), synced: AtomicBool::new(true) }
    }

    /// Moves the clock by `delta`, backwards too (an NTP step).
    pub fn step(&self, delta: TimeDelta) {
        let mut now = self.now.lock().expect("clock lock");
        *now = (*now + delta).trunc_subsecs(3);
    }

    pub fn set_synchronized(&self, synced: bool) {
        self.synced.store(synced, Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock")
    }

    fn synchronized(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        self.step(TimeDelta::from_std(duration).expect("sleeps are short"));
        Box::pin(tokio::task::yield_now())
    }
}
