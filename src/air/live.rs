//! What the running station knows right now and the API reports: the audio device's last
//! result, the next slot, whether the clock is behind the log — and the doorbell the API rings when an operator
//! queues something, so the engine looks at the queue at once; and the one the engine rings
//! when it appended to the log, so the push to the office goes without polling.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::Notify;

#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveState {
    /// The last airing's outcome at the device: `None` until something aired.
    pub audio_device: Option<DeviceReport>,
    /// (slot name, UTC ms)
    pub next_slot: Option<(String, i64)>,
    /// Set while the wall clock reads earlier than the last recorded event.
    pub clock_behind: Option<ClockBehind>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClockBehind {
    /// UTC ms of the last recorded event (or heartbeat): the clock must be at least this.
    pub last_recorded_at: i64,
    /// Still waiting for NTP (`true`), or gave up waiting and runs on the clock it has.
    pub waiting_for_sync: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub ok: bool,
    pub detail: String,
    pub at: i64,
}

#[derive(Clone, Default)]
pub struct Live {
    state: Arc<Mutex<LiveState>>,
    queue: Arc<Notify>,
    logged: Arc<Notify>,
}

impl Live {
    pub fn snapshot(&self) -> LiveState {
        self.state.lock().expect("live state lock").clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut LiveState)) {
        change(&mut self.state.lock().expect("live state lock"));
    }

    /// Something was queued: wake the engine.
    pub fn ring(&self) {
        self.queue.notify_one();
    }

    pub async fn rung(&self) {
        self.queue.notified().await;
    }

    /// The engine appended to the log: whoever passes it on (the push to the office) may go.
    pub fn logged(&self) {
        self.logged.notify_one();
    }

    /// The bell `ring` rings, for a task below the engine's layer that queues (the office's
    /// emergency bulletins).
    pub fn queue_bell(&self) -> Arc<Notify> {
        Arc::clone(&self.queue)
    }

    /// The bell `logged` rings, for a task below the engine's layer to wait on.
    pub fn logged_bell(&self) -> Arc<Notify> {
        Arc::clone(&self.logged)
    }
}
