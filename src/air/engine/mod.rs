//! The broadcast loop behind `loa run`: wake at least every second, fire due slots, play their
//! programs, and write what happened to the proof log.
//!
//! It owns no blocking work: the store and the player each run on their own thread and are
//! awaited here. Every airing is two events: `airing_started` before the device is asked to
//! play, and `airing_ended` with what the player measured. Whatever ends the process, the next
//! start closes the open airing as `interrupted` and records the slots that fell while it was
//! down.

mod airing;
mod evidence;
mod startup;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use crate::air::live::{ClockBehind, DeviceReport, Live};
use crate::air::scheduler::{Due, SlotTimer};
use crate::air::{amplifier, planner, quota};
use crate::audio::output::{Measurement, Output, PlayItem, PlaybackEnd, Progress, StopCause, StopSignal};
use crate::audit::chain;
use crate::config::{Config, Slot};
use crate::library::ingest::{IngestError, Library};
use crate::model::clip::{Clip, Priority};
use crate::model::level::level_cdbfs;
use crate::model::queue::Wanted;
use crate::ops::supervisor::Supervisor;
use crate::proof::Fields;
use crate::proof::events::{self, AiringEvidence, AiringPlan, AiringStatus, ClockAtStart, HookOutcome, MissReason};
use crate::store::{Heartbeat, StoreError, StoreHandle};
use crate::time::clock::Clock;
use evidence::{Failure, Judged, evidence_of};

/// The scheduler never sleeps longer than this against the wall clock, so a step is noticed
/// (`Engine::longest_sleep` on a station; simulations on a virtual clock may sleep longer).
pub const WALL_CLOCK_POLL: Duration = Duration::from_secs(1);
/// A slot is prepared this far ahead (program planned, `airing_started` written, clip decoder
/// opened), so only the device open stands between the scheduled instant and the first frame.
const CUE: TimeDelta = TimeDelta::seconds(2);
/// Heartbeats: every second while airing (so a power cut's record says how far the airing got);
/// idle, every 10 minutes. An idle beat says only "alive": a slot instant after it is in the log
/// or recorded missed at the next start whatever the beat's age, so beating more often buys
/// nothing but SD-card wear (each beat is a page through SQLite's WAL and its checkpoint: every
/// 5 s that was 171 MB a day; see benches/wear.py).
const HEARTBEAT_IDLE: TimeDelta = TimeDelta::minutes(10);
const HEARTBEAT_AIRING: TimeDelta = TimeDelta::seconds(1);
/// The write-ahead log is folded back and truncated this often while idle, and at shutdown.
const CHECKPOINT_EVERY: TimeDelta = TimeDelta::hours(1);
/// While waiting for NTP at start, look again this often.
const CLOCK_WAIT_STEP: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Engine {
    pub config: Arc<Config>,
    pub store: StoreHandle,
    pub player: Arc<dyn Output>,
    /// The longest the loop sleeps between looks at the clock: [`WALL_CLOCK_POLL`] on a station.
    pub longest_sleep: Duration,
    pub clock: Arc<dyn Clock>,
    pub library: Library,
    pub live: Live,
    pub shutdown: watch::Receiver<bool>,
}

/// What may stop an airing early for a bulletin queued "now" (Thông tư 39/2020: an emergency
/// interrupts anything at once, an older emergency included, which is then still owed; only an
/// emergency interrupts an emergency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preemptible {
    /// A slot's airing: any bulletin queued "now".
    ByAnyNow,
    /// An emergency, or an airing queued "now" itself: only an emergency queued after it.
    ByEmergency,
}

impl Preemptible {
    fn of(clip: &Clip, otherwise: Preemptible) -> Preemptible {
        if clip.meta.priority == Priority::Emergency { Preemptible::ByEmergency } else { otherwise }
    }
}

/// Whether a block of airings has the amplifier switched on.
enum Amplifier {
    Off,
    /// On, with how its `before_air` hook went (`None`: no hook configured).
    On {
        before_air: Option<HookOutcome>,
    },
}

impl Amplifier {
    fn before_air(&self) -> Option<&HookOutcome> {
        match self {
            Amplifier::Off => None,
            Amplifier::On { before_air } => before_air.as_ref(),
        }
    }
}

/// What the loop remembers between slots.
struct Run {
    started_at: DateTime<Utc>,
    /// When the last slot's program ended: a slot that fell during it and is now beyond its
    /// grace was missed because the station was busy.
    busy_until: Option<DateTime<Utc>>,
    last_beat: Option<DateTime<Utc>>,
    last_checkpoint: DateTime<Utc>,
    amplifier: Amplifier,
    stopping: bool,
    /// Whether the log already said how to fix an audio device that cannot play.
    told_about_device: bool,
    supervisor: Supervisor,
}

impl Run {
    /// Why a slot instant that came and went was not aired.
    fn miss_reason(&self, at: DateTime<Utc>) -> MissReason {
        if at < self.started_at {
            MissReason::StationDown
        } else if self.busy_until.is_some_and(|busy| busy > at) {
            MissReason::PreviousAiringOverran
        } else {
            MissReason::ClockJumped
        }
    }

    /// Until when a run of missed instants that began for `reason` is missed for that reason.
    fn reason_until(&self, reason: MissReason) -> Option<DateTime<Utc>> {
        match reason {
            MissReason::StationDown => Some(self.started_at),
            MissReason::PreviousAiringOverran => self.busy_until,
            MissReason::ClockJumped | MissReason::NoEligibleClip => None,
        }
    }
}

impl Engine {
    /// The engine of a station, looking at the clock at least every [`WALL_CLOCK_POLL`].
    pub fn new(
        config: Arc<Config>,
        store: StoreHandle,
        player: Arc<dyn Output>,
        clock: Arc<dyn Clock>,
        library: Library,
        live: Live,
        shutdown: watch::Receiver<bool>,
    ) -> Engine {
        Engine { config, store, player, longest_sleep: WALL_CLOCK_POLL, clock, library, live, shutdown }
    }

    pub async fn run(mut self) -> Result<(), EngineError> {
        let supervisor = Supervisor::from_env();
        let Some(clock_at_start) = self.wait_for_trusted_clock(&supervisor).await? else {
            supervisor.stopping();
            return Ok(()); // asked to stop while waiting; nothing was written
        };
        self.check_chain(chain::Scope::Whole).await?;
        self.check_receipt().await?;
        let now = self.clock.now();
        let previous = self.store.call(|s| s.heartbeat()).await?;
        self.close_unfinished_airings(previous).await?;
        self.preload().await;
        // Directory work is blocking I/O: not on the engine's runtime thread.
        let library = self.library.clone();
        let stale = tokio::task::spawn_blocking(move || library.remove_stale_staging(now - TimeDelta::hours(1))).await;
        if let Ok(Err(e)) = stale {
            tracing::warn!("cannot clean the staging directory: {e}");
        }
        let public_key = self.store.call(|s| s.public_key_hex()).await;
        let started = events::station_started(
            env!("CARGO_PKG_VERSION"),
            &public_key,
            previous.map(|h| h.at),
            clock_at_start,
            self.clock.synchronized(),
        );
        self.append(started).await?;

        let last_fired = self.store.call(|s| s.last_fired_by_slot()).await?;
        // Every instant since the station was last alive, however long ago: the slots missed
        // meanwhile are recorded as one run per slot, in bounded work (`SlotTimer::missed_run`).
        let resume_from = previous.and_then(|h| DateTime::from_timestamp_millis(h.at)).unwrap_or(now);
        let mut timer = SlotTimer::new(&self.config.slots, self.config.station.timezone, &last_fired, resume_from);
        let mut run = Run {
            started_at: now,
            busy_until: None,
            last_beat: None,
            last_checkpoint: now,
            amplifier: Amplifier::Off,
            stopping: false,
            told_about_device: false,
            supervisor,
        };
        let next_slot = timer.next_fire().map_or_else(|| "none".to_owned(), |at| at.to_rfc3339());
        let device = crate::audio::device::describe(&self.config.audio.device);
        tracing::info!(station = %self.config.station.id, %device, next_slot, "station on air");
        run.supervisor.ready();
        self.warn_quotas_at_risk().await?;
        give_back_idle_pages();

        while !run.stopping {
            run.supervisor.alive();
            let now = self.clock.now();
            self.beat(&mut run, now, None).await?;
            if (now - run.last_checkpoint).abs() >= CHECKPOINT_EVERY {
                run.last_checkpoint = now;
                self.checkpoint().await;
                self.check_chain(chain::Scope::New).await?;
            }
            loop {
                // What an operator (or the office) queued "now" goes before any slot that is due.
                self.air_queued_now(&mut run).await?;
                let now = self.clock.now();
                let Some(due) = timer.due(now, self.cue()) else { break };
                match due {
                    Due::Air { slot, at } => self.air_slot(&mut run, timer.slot(slot).clone(), at).await?,
                    Due::Missed { slot, at } => {
                        let reason = run.miss_reason(at);
                        let missed = timer.missed_run(slot, at, now, run.reason_until(reason));
                        self.record_missed(timer.slot(slot), missed, reason).await?;
                    }
                }
                if run.stopping {
                    break;
                }
            }
            self.air_queued_now(&mut run).await?;
            self.live.update(|l| {
                l.next_slot = timer.next_slot().map(|(slot, at)| (slot.name.clone(), at.timestamp_millis()))
            });
            let until_cue = timer
                .next_fire()
                .map_or(self.longest_sleep, |next| (next - self.cue() - self.clock.now()).to_std().unwrap_or_default());
            tokio::select! {
                _ = self.clock.sleep(until_cue.min(self.longest_sleep)) => {}
                () = self.live.rung() => {}
                () = stop_requested(&mut self.shutdown) => run.stopping = true,
            }
        }
        run.supervisor.stopping();
        self.append(events::station_stopped("shutdown")).await?;
        let stopped_at = self.clock.now().timestamp_millis();
        self.store.call(move |s| s.beat(Heartbeat { at: stopped_at, airing: None })).await?;
        self.checkpoint().await;
        tracing::info!("station stopped");
        Ok(())
    }

    async fn append(&self, fields: Fields) -> Result<i64, EngineError> {
        let at = self.clock.now();
        let seq = self.store.call(move |s| s.append(at, fields)).await?.seq;
        self.live.logged();
        Ok(seq)
    }

    /// A failed checkpoint loses nothing (the log stays in the WAL); it is only noted.
    async fn checkpoint(&self) {
        match self.store.call(|s| s.checkpoint()).await {
            Ok(complete) => tracing::debug!(complete, "WAL checkpoint"),
            Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
        }
    }

    async fn beat(&self, run: &mut Run, now: DateTime<Utc>, airing: Option<(i64, u64)>) -> Result<(), EngineError> {
        let every = if airing.is_some() { HEARTBEAT_AIRING } else { HEARTBEAT_IDLE };
        if run.last_beat.is_some_and(|last| now >= last && now - last < every) {
            return Ok(());
        }
        run.last_beat = Some(now);
        self.store.call(move |s| s.beat(Heartbeat { at: now.timestamp_millis(), airing })).await?;
        Ok(())
    }

    async fn warn_quotas_at_risk(&self) -> Result<(), EngineError> {
        let (config, now) = (Arc::clone(&self.config), self.clock.now());
        for q in self.store.call(move |s| quota::standings(s, &config, now)).await? {
            if q.status == quota::QuotaStatus::AtRisk {
                let language = q.language.as_deref().unwrap_or("any");
                let reason = q.reason.map_or("unknown", quota::AtRisk::as_str);
                tracing::warn!(topic = %q.topic, language, period = %q.period, completed = q.completed, required = q.required, reason, "quota at risk");
            }
        }
        Ok(())
    }
}

/// Start-up and each slot leave pages resident that waiting for the next slot does not use:
/// given back on a blocking thread (`ops::sys::return_idle_pages`), so the box idles small.
fn give_back_idle_pages() {
    tokio::task::spawn_blocking(|| {
        let bytes = crate::ops::sys::return_idle_pages();
        tracing::debug!(bytes, "idle pages given back");
    });
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
