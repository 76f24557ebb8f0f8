//! The broadcast loop behind `loa run`: wake at least every second, fire due slots, play their
//! programs, and write what happened to the proof log.
//!
//! It owns no blocking work: the store and the player each run on their own thread and are
//! awaited here. Every airing is two events: `airing_started` before the device is asked to
//! play, and `airing_ended` with what the player measured. Whatever ends the process, the next
//! start closes the open airing as `interrupted` and records the slots that fell while it was
//! down.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use crate::air::live::{ClockBehind, DeviceReport, Live};
use crate::air::scheduler::{Due, RECOVERY_WINDOW, SlotTimer};
use crate::air::{amplifier, planner, quota};
use crate::audio::player::{Measurement, Output, PlayItem, PlaybackEnd, Progress, StopCause, StopSignal};
use crate::audit::chain;
use crate::config::{Config, Slot};
use crate::library::ingest::{IngestError, Library};
use crate::model::clip::{Clip, Priority};
use crate::model::queue::Wanted;
use crate::ops::supervisor::Supervisor;
use crate::proof::Fields;
use crate::proof::events::{self, AiringEvidence, AiringPlan, AiringStatus, ClockAtStart, HookOutcome, level_cdbfs};
use crate::store::{Heartbeat, StoreError, StoreHandle};
use crate::time::clock::Clock;

/// The scheduler never sleeps longer than this against the wall clock, so a step is noticed
/// (`Engine::longest_sleep` on a station; simulations on a virtual clock may sleep longer).
pub const WALL_CLOCK_POLL: Duration = Duration::from_secs(1);
/// A slot is prepared this far ahead (program planned, `airing_started` written, clip decoder
/// opened), so only the device open stands between the scheduled instant and the first frame.
const CUE: TimeDelta = TimeDelta::seconds(2);
/// Heartbeats: rarely while idle (SD cards wear), every second while airing (so a power cut's
/// record says how far the airing got).
const HEARTBEAT_IDLE: TimeDelta = TimeDelta::seconds(5);
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
/// interrupts anything, at once; nothing interrupts an emergency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preemptible {
    No,
    /// A slot's airing: any bulletin queued "now".
    ByAnyNow,
    /// An airing queued "now" itself: only an emergency queued after it.
    ByEmergency,
}

impl Preemptible {
    fn of(clip: &Clip, otherwise: Preemptible) -> Preemptible {
        if clip.meta.priority == Priority::Emergency { Preemptible::No } else { otherwise }
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
    /// `Some` while a block of airings has the amplifier switched on, holding how its
    /// `before_air` hook went (`Some(None)`: no hook configured).
    amplifier: Option<Option<HookOutcome>>,
    stopping: bool,
    /// Whether the log already said how to fix an audio device that cannot play.
    told_about_device: bool,
    supervisor: Supervisor,
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
        let now = self.clock.now();
        let previous = self.store.call(|s| s.heartbeat()).await?;
        self.close_unfinished_airings(previous).await?;
        self.preload().await;
        if let Err(e) = self.library.remove_stale_staging(now - TimeDelta::hours(1)) {
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
        let resume_from = previous
            .and_then(|h| DateTime::from_timestamp_millis(h.at))
            .map_or(now, |alive| alive.max(now - RECOVERY_WINDOW));
        let mut timer = SlotTimer::new(&self.config.slots, self.config.station.timezone, &last_fired, resume_from);
        let mut run = Run {
            started_at: now,
            busy_until: None,
            last_beat: None,
            last_checkpoint: now,
            amplifier: None,
            stopping: false,
            told_about_device: false,
            supervisor,
        };
        let next_slot = timer.next_fire().map_or_else(|| "none".to_owned(), |at| at.to_rfc3339());
        tracing::info!(station = %self.config.station.id, next_slot, "station on air");
        run.supervisor.ready();
        self.warn_quotas_at_risk().await?;

        while !run.stopping {
            run.supervisor.alive(self.player.responsive());
            let now = self.clock.now();
            self.beat(&mut run, now, None).await?;
            if (now - run.last_checkpoint).abs() >= CHECKPOINT_EVERY {
                run.last_checkpoint = now;
                self.checkpoint().await;
                self.check_chain(chain::Scope::New).await?;
            }
            while let Some(due) = timer.due(self.clock.now(), self.cue()) {
                match due {
                    Due::Air { slot, at } => self.air_slot(&mut run, timer.slot(slot).clone(), at).await?,
                    Due::Missed { slot, at } => self.record_missed(&run, timer.slot(slot), at).await?,
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
        Ok(self.store.call(move |s| s.append(at, fields)).await?.seq)
    }

    /// A box without a real-time clock can boot with a date far in the past. If the clock
    /// reads earlier than the last recorded event and is not synchronised, wait (at most
    /// `clock.sync_wait_seconds`) for NTP before writing or airing anything. Returns how it
    /// went, or `None` if asked to stop meanwhile.
    async fn wait_for_trusted_clock(&self, supervisor: &Supervisor) -> Result<Option<ClockAtStart>, EngineError> {
        let Some(last_recorded_at) = self.store.call(|s| s.last_recorded_at()).await? else {
            return Ok(Some(ClockAtStart::default())); // a new station: nothing to compare with
        };
        let behind_ms = |now: DateTime<Utc>| (last_recorded_at - now.timestamp_millis()).max(0);
        let limit = self.config.clock.sync_wait;
        let mut waited = Duration::ZERO;
        let mut shutdown = self.shutdown.clone();
        let mut said = false;
        while behind_ms(self.clock.now()) > 0 && !self.clock.synchronized() && waited < limit {
            if !said {
                said = true;
                tracing::warn!(
                    clock = %self.clock.now(),
                    last_recorded = %DateTime::from_timestamp_millis(last_recorded_at).unwrap_or_default(),
                    wait_s = limit.as_secs(),
                    "the clock reads earlier than the last recorded event and is not synchronised; waiting for NTP"
                );
            }
            self.live.update(|l| l.clock_behind = Some(ClockBehind { last_recorded_at, waiting_for_sync: true }));
            supervisor.still_starting("waiting for the clock to be set (NTP)");
            tokio::select! {
                _ = self.clock.sleep(CLOCK_WAIT_STEP) => waited += CLOCK_WAIT_STEP,
                () = stop_requested(&mut shutdown) => return Ok(None),
            }
        }
        let clock_behind_ms = behind_ms(self.clock.now());
        if clock_behind_ms > 0 && !self.clock.synchronized() {
            tracing::error!(
                behind_s = clock_behind_ms / 1000,
                "no NTP after waiting; running on an unsynchronised clock that reads earlier than the log"
            );
            self.live.update(|l| l.clock_behind = Some(ClockBehind { last_recorded_at, waiting_for_sync: false }));
        } else {
            if said {
                tracing::info!(waited_s = waited.as_secs(), "the clock is set; going on air");
            }
            self.live.update(|l| l.clock_behind = None);
        }
        Ok(Some(ClockAtStart { clock_behind_ms, clock_waited_ms: waited.as_millis() as u64 }))
    }

    /// Checks the stored log (between slots: never while a slot airs); damage is recorded as a
    /// signed `log_damaged` event and shown by `/healthz`, and the station keeps airing.
    async fn check_chain(&self, scope: chain::Scope) -> Result<(), EngineError> {
        let now = self.clock.now();
        let started = std::time::Instant::now();
        match self.store.call(move |s| chain::check_stored_log(s, now, scope)).await? {
            Some(damage) => tracing::error!("{damage}"),
            None => tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "proof log checked"),
        }
        Ok(())
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

    /// After a crash or power cut: close every airing left open, with what the last heartbeat
    /// measured of it.
    async fn close_unfinished_airings(&self, previous: Option<Heartbeat>) -> Result<(), EngineError> {
        for start in self.store.call(|s| s.unfinished_airings()).await? {
            let plan: AiringPlan =
                serde_json::from_str(&start.body).expect("airing_started bodies hold an airing plan");
            let progress =
                previous.and_then(|h| h.airing.filter(|(seq, _)| *seq == start.seq).map(|(_, played)| (h.at, played)));
            let evidence = AiringEvidence::unmeasured(
                AiringStatus::Interrupted,
                progress.map(|(alive_at, _)| alive_at),
                progress.map_or(0, |(_, played)| played),
                "power loss or crash: the station stopped during this airing".into(),
            );
            tracing::warn!(airing = start.seq, clip = plan.clip_id, "closing an airing a crash or power cut left open");
            self.append(events::airing_ended(start.seq, &plan, &evidence, self.clock.synchronized())).await?;
        }
        Ok(())
    }

    /// Adds the config's `[[preload]]` bulletins that are not in the library yet. The copy and
    /// the decode run on the store thread (at start, before any slot), not on the runtime.
    async fn preload(&self) {
        for preload in &self.config.preload {
            let (library, file, meta, now) =
                (self.library.clone(), preload.file.clone(), preload.meta.clone(), self.clock.now());
            let admitted = self
                .store
                .call(move |s| {
                    let mut input = std::fs::File::open(&file)?;
                    let mut staged = library.stage(input.metadata()?.len())?;
                    std::io::copy(&mut input, &mut staged)?;
                    library.admit(staged, &meta, s, now)
                })
                .await;
            match admitted {
                Ok(inserted) => tracing::debug!(?inserted, "preloaded"),
                Err(IngestError::Rejected(r)) => tracing::warn!(file = %preload.file.display(), "preload refused: {r}"),
                Err(e) => tracing::warn!(file = %preload.file.display(), "cannot preload: {e}"),
            }
        }
    }

    async fn record_missed(&self, run: &Run, slot: &Slot, at: DateTime<Utc>) -> Result<(), EngineError> {
        let reason = if at < run.started_at {
            "station_down"
        } else if run.busy_until.is_some_and(|busy| busy > at) {
            "previous_airing_overran"
        } else {
            "clock_jumped"
        };
        tracing::warn!(slot = %slot.name, %at, reason, "slot missed");
        self.append(events::slot_missed(&slot.name, slot.peak, at, reason, self.clock.synchronized())).await?;
        Ok(())
    }

    async fn air_slot(&mut self, run: &mut Run, slot: Slot, at: DateTime<Utc>) -> Result<(), EngineError> {
        let date = at.with_timezone(&self.config.station.timezone).date_naive();
        let (quotas, timezone, peak) = (self.config.quotas.clone(), self.config.station.timezone, slot.peak);
        let now = self.clock.now();
        let (clips, last_completed, queued, needs) = self
            .store
            .call(move |s| {
                let clips = s.active_clips()?;
                // "Next slot" items whose clip was retired meanwhile never air: used up here.
                let mut queued = Vec::new();
                for item in s.pending_queue(Wanted::NextSlot)? {
                    if clips.iter().any(|c| c.id == item.clip_id) {
                        queued.push((item.id, item.clip_id));
                    } else {
                        s.take_queue_item(item.id, now)?;
                    }
                }
                let needs = quota::unmet(s, &quotas, peak, at, timezone)?;
                Ok::<_, StoreError>((clips, s.last_completed_by_clip()?, queued, needs))
            })
            .await?;
        let budget = u64::from(slot.max_minutes) * 60_000;
        let program = planner::slot_program(&clips, &queued, &last_completed, date, budget, &needs);
        if program.is_empty() {
            tracing::warn!(slot = %slot.name, "nothing eligible to air");
            let fields = events::slot_missed(&slot.name, slot.peak, at, "no_eligible_clip", self.clock.synchronized());
            self.append(fields).await?;
            return Ok(());
        }
        tracing::info!(slot = %slot.name, clips = program.len(), "slot starts");
        run.amplifier = Some(self.amplifier_on().await);
        // The slot's instant, unless the amplifier's warm-up after its hook reaches beyond it.
        let release_at = at.max(self.clock.now() + self.warmup());
        self.player.begin_slot(&self.config.audio.device);
        // Set once the device fails: the rest of the program is recorded unplayed, and the next
        // slot opens the device afresh.
        let mut dead_device = None;
        for (i, planner::SlotItem { clip, queue_id, quota }) in program.iter().enumerate() {
            if let Some(id) = *queue_id {
                let now = self.clock.now();
                self.store.call(move |s| s.take_queue_item(id, now)).await?;
            }
            let plan = AiringPlan {
                quota: quota.map(|i| self.config.quotas[i].label()),
                ..AiringPlan::new(clip, Some((&slot.name, slot.peak, at)), self.gain_db(clip))
            }
            .with_before_air(run.amplifier.as_ref().and_then(Option::as_ref));
            if let Some(reason) = &dead_device {
                self.record_unplayed(&plan, format!("not played: {reason} earlier in this slot")).await?;
                continue;
            }
            let preemptible = Preemptible::of(clip, Preemptible::ByAnyNow);
            let (status, failure) = self.air(run, plan, clip, (i == 0).then_some(release_at), preemptible).await?;
            if run.stopping {
                break;
            }
            if let Some(Failure::Device(reason)) = failure {
                dead_device = Some(reason);
            }
            if status == AiringStatus::Preempted {
                self.player.end_slot();
                self.air_queued_now(run).await?;
                self.player.begin_slot(&self.config.audio.device);
            }
        }
        self.player.end_slot();
        self.amplifier_off(run, Some(&slot.name)).await?;
        run.busy_until = Some(self.clock.now());
        self.warn_quotas_at_risk().await
    }

    fn warmup(&self) -> TimeDelta {
        TimeDelta::from_std(self.config.audio.amplifier.warmup).expect("warm-up is at most 30 s")
    }

    /// How far ahead of its instant a slot is prepared: the cue, plus the amplifier's warm-up.
    fn cue(&self) -> TimeDelta {
        CUE + self.warmup()
    }

    /// Runs `audio.before_air`, if configured. A failure is logged here and recorded on the
    /// airings (and fails them when `audio.hook_required`).
    async fn amplifier_on(&self) -> Option<HookOutcome> {
        let argv = self.config.audio.amplifier.before_air.as_ref()?;
        let outcome = amplifier::run(argv, amplifier::HOOK_TIMEOUT).await;
        if let Some(detail) = &outcome.detail {
            tracing::error!(
                required = self.config.audio.amplifier.required,
                "amplifier hook before_air failed: {detail}"
            );
        }
        Some(outcome)
    }

    /// Closes a block of airings: runs `audio.after_air`, recording a failure.
    async fn amplifier_off(&self, run: &mut Run, slot: Option<&str>) -> Result<(), EngineError> {
        run.amplifier = None;
        let Some(argv) = &self.config.audio.amplifier.after_air else { return Ok(()) };
        let outcome = amplifier::run(argv, amplifier::HOOK_TIMEOUT).await;
        if let Some(detail) = &outcome.detail {
            tracing::error!("amplifier hook after_air failed: {detail}");
            self.append(events::amplifier_hook_failed("after_air", slot, &outcome, self.clock.synchronized())).await?;
        }
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

    /// Airs every bulletin queued "now" at once, outside any slot, oldest first.
    async fn air_queued_now(&mut self, run: &mut Run) -> Result<(), EngineError> {
        loop {
            let pending = self.store.call(|s| s.pending_queue(Wanted::Now)).await?;
            if pending.is_empty() || run.stopping {
                return Ok(());
            }
            // Inside a pre-empted slot the amplifier is already on.
            let own_block = run.amplifier.is_none();
            let mut release_at = None;
            if own_block {
                run.amplifier = Some(self.amplifier_on().await);
                release_at = Some(self.clock.now() + self.warmup());
            }
            self.player.begin_slot(&self.config.audio.device);
            let mut dead_device = None;
            for item in pending {
                let now = self.clock.now();
                let (id, clip_id) = (item.id, item.clip_id);
                let clip = self
                    .store
                    .call(move |s| {
                        s.take_queue_item(id, now)?;
                        s.clip(clip_id)
                    })
                    .await?;
                let Some(clip) = clip else { continue };
                tracing::warn!(clip = clip.id, title = %clip.meta.title, "airing a bulletin queued now");
                let plan = AiringPlan::new(&clip, None, self.gain_db(&clip))
                    .with_before_air(run.amplifier.as_ref().and_then(Option::as_ref));
                if let Some(reason) = &dead_device {
                    self.record_unplayed(&plan, format!("not played: {reason} earlier in this block")).await?;
                    continue;
                }
                let preemptible = Preemptible::of(&clip, Preemptible::ByEmergency);
                let (status, failure) = self.air(run, plan, &clip, release_at.take(), preemptible).await?;
                // Stopped for an emergency queued meanwhile: read the queue again (it comes first).
                if run.stopping || status == AiringStatus::Preempted {
                    break;
                }
                if let Some(Failure::Device(reason)) = failure {
                    dead_device = Some(reason);
                }
            }
            self.player.end_slot();
            if own_block {
                self.amplifier_off(run, None).await?;
            }
        }
    }

    /// Gain toward the loudness target that never lifts the clip's peak above 0 dBFS.
    fn gain_db(&self, clip: &Clip) -> f64 {
        let headroom = -clip.audio.peak_dbfs.max(clip.audio.true_peak_dbfs);
        (self.config.audio.target_lufs - clip.audio.loudness_lufs).min(headroom)
    }

    /// Records an airing that was planned but could not be played, with why.
    async fn record_unplayed(&self, plan: &AiringPlan, reason: String) -> Result<(), EngineError> {
        let synced = self.clock.synchronized();
        let seq = self.append(events::airing_started(plan, synced)).await?;
        let ended_at = Some(self.clock.now().timestamp_millis());
        let evidence = AiringEvidence::unmeasured(AiringStatus::Failed, ended_at, 0, reason);
        self.append(events::airing_ended(seq, plan, &evidence, synced)).await?;
        Ok(())
    }

    /// Takes a clip that cannot be played off the air, so the next slots air something else;
    /// the proof log's `clip_retired` (with the reason) tells the operator.
    async fn set_aside(&self, clip: &Clip, reason: String) -> Result<(), EngineError> {
        tracing::error!(clip = clip.id, title = %clip.meta.title, "clip set aside: {reason}");
        let (id, now) = (clip.id, self.clock.now());
        self.store.call(move |s| s.retire_clip(id, now, Some(&reason))).await?;
        Ok(())
    }

    /// Plays one clip, released to the device at `start_at` if given (else at once), and
    /// records it. Returns its status, and what went wrong that matters for the rest of the
    /// slot (a clip set aside here; a dead device for the caller to act on).
    async fn air(
        &mut self,
        run: &mut Run,
        plan: AiringPlan,
        clip: &Clip,
        start_at: Option<DateTime<Utc>>,
        preemptible: Preemptible,
    ) -> Result<(AiringStatus, Option<Failure>), EngineError> {
        if plan.before_air_ok == Some(false) && self.config.audio.amplifier.required {
            let reason = format!(
                "not played: the amplifier hook (audio.before_air) failed and audio.hook_required is set: {}",
                plan.before_air_detail.as_deref().unwrap_or("unknown")
            );
            self.record_unplayed(&plan, reason).await?;
            return Ok((AiringStatus::Failed, None));
        }
        let synced = self.clock.synchronized();
        let seq = self.append(events::airing_started(&plan, synced)).await?;
        let requested_at = self.clock.now();
        let start_after = start_at.and_then(|at| (at - requested_at).to_std().ok()).unwrap_or_default();
        let stop = StopSignal::default();
        let progress = Progress::default();
        let planned = Duration::from_millis(plan.planned_ms);
        let path = self.library.clip_path(&clip.sha256);
        let item = PlayItem { path, gain_db: plan.gain_cdb as f64 / 100.0, planned, start_after, stop: stop.clone() };
        // Beyond the player's own deadline: only a stuck audio thread gets here.
        let give_up = tokio::time::Instant::now() + start_after + planned + planned / 20 + Duration::from_secs(15);
        let play = self.player.play(item, progress.clone());
        tokio::pin!(play);
        let mut shutdown = self.shutdown.clone();
        let measurement = loop {
            tokio::select! {
                measured = &mut play => break measured,
                () = stop_requested(&mut shutdown), if !run.stopping => {
                    run.stopping = true;
                    stop.stop(StopCause::Shutdown);
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    run.supervisor.alive(self.player.responsive());
                    let played = progress.played().as_millis() as u64;
                    self.beat(run, self.clock.now(), Some((seq, played))).await?;
                }
                _ = tokio::time::sleep_until(give_up) => break None,
                () = self.live.rung(), if preemptible != Preemptible::No => {
                    let pending = self.store.call(|s| s.pending_now()).await?;
                    let wanted = match preemptible {
                        Preemptible::ByEmergency => pending.emergency,
                        _ => pending.any,
                    };
                    if wanted {
                        stop.stop(StopCause::Preempted);
                    }
                }
            }
        };
        let Judged { evidence, failure } =
            evidence_of(measurement.as_ref(), (requested_at, start_after), self.clock.now());
        if let (Some(Failure::Device(reason)), false) = (&failure, run.told_about_device) {
            // Once per run, one line that says what to do (the ALSA library's own noise does not).
            run.told_about_device = true;
            tracing::error!(
                "the audio device \"{}\" cannot play ({reason}). Check audio.device (`aplay -L` lists the \
                 devices); on a machine without a sound card run with ALSA_CONFIG_PATH=config/alsa-file-paced.conf \
                 (the air signal goes to data/air.raw in real time) or config/alsa-file.conf",
                self.config.audio.device
            );
        }
        tracing::info!(
            clip = plan.clip_id,
            status = evidence.status.as_str(),
            played_ms = evidence.played_ms,
            "airing ended"
        );
        self.append(events::airing_ended(seq, &plan, &evidence, synced)).await?;
        self.beat(run, self.clock.now(), None).await?;
        let report = DeviceReport {
            ok: evidence.status != AiringStatus::Failed,
            detail: evidence.reason.clone().unwrap_or_else(|| format!("{} ms played", evidence.played_ms)),
            at: self.clock.now().timestamp_millis(),
        };
        self.live.update(|l| l.audio_device = Some(report));
        if let Some(Failure::Clip(reason)) = &failure {
            self.set_aside(clip, reason.clone()).await?;
        }
        Ok((evidence.status, failure))
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Why an airing went wrong in a way that changes what happens next in the slot.
#[derive(Debug, Clone, PartialEq)]
enum Failure {
    /// The clip cannot be played (it does not decode): set it aside, go on with the next.
    Clip(String),
    /// The audio device (or its thread) is gone: nothing more airs in this slot.
    Device(String),
}

/// What the player measured, turned into the airing's evidence and verdict, and what it
/// means for the rest of the slot.
struct Judged {
    evidence: AiringEvidence,
    failure: Option<Failure>,
}

/// An airing is judged not to have been heard in real time when the device took its audio at
/// more than twice real time, beyond the buffer it reports and this much more it may hold
/// unreported (a pipe, a network sink's queue: seconds at a low byte rate). A device that
/// takes a 26 s bulletin in a tenth of a second is far beyond it.
const REAL_TIME_SLACK: Duration = Duration::from_secs(5);

/// Turns what the player measured into the airing's evidence and verdict. `requested_at` is
/// the wall time of the play request, `start_after` how long after it the clip was due out.
fn evidence_of(
    measured: Option<&Measurement>,
    (requested_at, start_after): (DateTime<Utc>, Duration),
    now: DateTime<Utc>,
) -> Judged {
    let Some(m) = measured else {
        let reason = "the audio thread did not answer; it may be stuck on the device";
        return Judged {
            evidence: AiringEvidence::unmeasured(
                AiringStatus::Failed,
                Some(now.timestamp_millis()),
                0,
                reason.to_owned(),
            ),
            failure: Some(Failure::Device(reason.to_owned())),
        };
    };
    let played = m.played();
    let played_ms = played.as_millis() as u64;
    let silent_ms = m.silent.as_millis() as u64;
    let ms = |frames: u64| frames * 1000 / u64::from(m.sample_rate.max(1));
    let some_or = |played: AiringStatus| if m.frames > 0 { played } else { AiringStatus::Failed };
    // From the first frame taken to the last played out: at least what was played, less the
    // device's buffer, on a device that plays in real time.
    let heard_for = m.first_frame_after.zip(m.played_out_after).map(|(first, out)| out.saturating_sub(first));
    let buffer = Duration::from_secs_f64(2.0 * m.period_frames as f64 / f64::from(m.sample_rate.max(1)));
    let too_fast = heard_for.filter(|&wall| played > (wall + buffer) * 2 + REAL_TIME_SLACK);
    let mut failure = None;
    let (status, reason) = match &m.end {
        PlaybackEnd::Finished if m.frames + m.period_frames < m.expected_frames => (
            some_or(AiringStatus::Partial),
            Some(format!("the device took {} ms of the clip's {} ms", ms(m.frames), ms(m.expected_frames))),
        ),
        PlaybackEnd::Finished if too_fast.is_some() => (
            AiringStatus::Partial,
            Some(format!(
                "the audio device took {played_ms} ms of audio in {} ms: it is not playing in real time, so nobody \
                 heard it whole (check audio.device)",
                too_fast.unwrap_or_default().as_millis()
            )),
        ),
        PlaybackEnd::Finished if silent_ms * 10 >= played_ms * 9 => {
            (AiringStatus::Partial, Some("the output was silent".to_owned()))
        }
        PlaybackEnd::Finished => (AiringStatus::Completed, None),
        PlaybackEnd::Stopped(StopCause::Shutdown) => (AiringStatus::Interrupted, Some("shutdown".to_owned())),
        PlaybackEnd::Stopped(StopCause::Preempted) => {
            (AiringStatus::Preempted, Some("pre-empted by an emergency bulletin".to_owned()))
        }
        PlaybackEnd::DecodeError(e) => {
            let reason = format!("the clip cannot be decoded: {e}");
            failure = Some(Failure::Clip(reason.clone()));
            (some_or(AiringStatus::Partial), Some(reason))
        }
        PlaybackEnd::DeviceError(e) => {
            let reason = format!("audio device error: {e}");
            failure = Some(Failure::Device(reason.clone()));
            (some_or(AiringStatus::Partial), Some(reason))
        }
        PlaybackEnd::Stalled => {
            let reason = "the audio device stopped taking samples".to_owned();
            failure = Some(Failure::Device(reason.clone()));
            (some_or(AiringStatus::Partial), Some(reason))
        }
        PlaybackEnd::Overran => {
            (some_or(AiringStatus::Partial), Some("still playing past its duration and margin; stopped".to_owned()))
        }
    };
    let at = |d: Duration| (requested_at + TimeDelta::from_std(d).unwrap_or_default()).timestamp_millis();
    let evidence = AiringEvidence {
        started_at: m.first_frame_after.map(at),
        ended_at: Some(at(m.played_out_after.unwrap_or(m.elapsed))),
        played_ms,
        peak_cdbfs: level_cdbfs(f64::from(m.peak)),
        rms_cdbfs: level_cdbfs(m.rms),
        silent_ms,
        first_frame_latency_ms: m.first_frame_after.map(|d| d.saturating_sub(start_after).as_millis() as i64),
        status,
        reason,
    };
    Judged { evidence, failure }
}
