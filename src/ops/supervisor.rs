//! Talking to systemd when it runs us (`Type=notify`): READY once the store is open, recovery
//! has run and the scheduler is armed; watchdog pings only while the engine loop turns (the
//! audio device runs in its own process, which the engine ends itself when it hangs: see
//! `audio::process`); STOPPING on the way out. Without `NOTIFY_SOCKET` (a shell, the tests) every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

pub struct Supervisor {
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Supervisor {
    pub fn from_env() -> Supervisor {
        Supervisor { watchdog: sd_notify::watchdog_enabled(), last_ping: None }
    }

    fn notify(&self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }

    pub fn ready(&self) {
        self.notify(&[NotifyState::Ready, NotifyState::Status("on air")]);
    }

    /// Called from the engine loop: pings the watchdog (at a quarter of its period).
    pub fn alive(&mut self) {
        let Some(period) = self.watchdog else { return };
        if self.last_ping.is_none_or(|last| last.elapsed() >= period / 4) {
            self.last_ping = Some(Instant::now());
            self.notify(&[NotifyState::Watchdog]);
        }
    }

    /// Start-up is legitimately slow (waiting for the clock): say why, and ask systemd for
    /// more time than `TimeoutStartSec` so it does not kill us meanwhile.
    pub fn still_starting(&self, status: &str) {
        const MORE: Duration = Duration::from_secs(30);
        self.notify(&[NotifyState::ExtendTimeoutUsec(MORE.as_micros() as u32), NotifyState::Status(status)]);
    }

    pub fn stopping(&self) {
        self.notify(&[NotifyState::Stopping]);
    }
}
