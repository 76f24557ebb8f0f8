//! Airing a slot: plan its program, switch the amplifier, play each item through the output,
//! and record exactly one outcome per planned item — also for "now" bulletins outside slots.

use super::*;
use crate::time::slots::InstantRun;

impl Engine {
    /// One `slot_missed` event for a run of instants of one slot missed for one reason.
    pub(super) async fn record_missed(
        &self,
        slot: &Slot,
        missed: InstantRun,
        reason: MissReason,
    ) -> Result<(), EngineError> {
        tracing::warn!(slot = %slot.name, at = %missed.first, last = %missed.last, count = missed.count, %reason, "slot missed");
        self.append(events::slot_missed(&slot.name, slot.peak, missed, reason, self.clock.synchronized())).await?;
        Ok(())
    }

    pub(super) async fn air_slot(&mut self, run: &mut Run, slot: Slot, at: DateTime<Utc>) -> Result<(), EngineError> {
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
                let owed = planner::Owed::of(&s.priority_bulletins()?);
                Ok::<_, StoreError>((clips, s.last_completed_by_clip()?, queued, (needs, owed)))
            })
            .await?;
        let (needs, owed) = needs;
        let frame = planner::SlotFrame { date, budget_ms: u64::from(slot.max_minutes) * 60_000, peak };
        let program = planner::slot_program(&clips, &queued, &last_completed, frame, &needs, &owed);
        if program.is_empty() {
            tracing::warn!(slot = %slot.name, "nothing eligible to air");
            let missed = InstantRun::one(at);
            let fields = events::slot_missed(
                &slot.name,
                slot.peak,
                missed,
                MissReason::NoEligibleClip,
                self.clock.synchronized(),
            );
            self.append(fields).await?;
            return Ok(());
        }
        tracing::info!(slot = %slot.name, clips = program.len(), "slot starts");
        run.amplifier = Amplifier::On { before_air: self.amplifier_on().await };
        // The slot's instant, unless the amplifier's warm-up after its hook reaches beyond it.
        let release_at = at.max(self.clock.now() + self.warmup());
        self.player.begin_slot(&self.config.audio.device);
        // Set once the device fails: the rest of the program is recorded unplayed, and the next
        // slot opens the device afresh.
        let mut dead_device = None;
        for (i, planner::SlotItem { clip, queue_id, quota }) in program.iter().enumerate() {
            // A bulletin queued "now" airs before the slot's next item, whatever that item is (an
            // emergency clip leading the slot cannot be pre-empted, so it must not start first).
            if self.store.call(|s| s.pending_now()).await?.any {
                self.air_queued_within_slot(run).await?;
            }
            if let Some(id) = *queue_id {
                let now = self.clock.now();
                self.store.call(move |s| s.take_queue_item(id, now)).await?;
            }
            let plan = AiringPlan {
                quota: quota.map(|i| self.config.quotas[i].label()),
                ..AiringPlan::new(clip, Some((&slot.name, slot.peak, at)), self.gain_db(clip))
            }
            .with_before_air(run.amplifier.before_air());
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
                self.air_queued_within_slot(run).await?;
            }
        }
        self.player.end_slot();
        self.amplifier_off(run, Some(&slot.name)).await?;
        run.busy_until = Some(self.clock.now());
        super::give_back_idle_pages();
        self.warn_quotas_at_risk().await
    }

    /// The bulletins queued "now", aired between two items of a slot (the amplifier stays on).
    async fn air_queued_within_slot(&mut self, run: &mut Run) -> Result<(), EngineError> {
        self.player.end_slot();
        self.air_queued_now(run).await?;
        self.player.begin_slot(&self.config.audio.device);
        Ok(())
    }

    pub(super) fn warmup(&self) -> TimeDelta {
        TimeDelta::from_std(self.config.audio.amplifier.warmup).expect("warm-up is at most 30 s")
    }

    /// How far ahead of its instant a slot is prepared: the cue, plus the amplifier's warm-up.
    pub(super) fn cue(&self) -> TimeDelta {
        CUE + self.warmup()
    }

    /// Runs `audio.before_air`, if configured. A failure is logged here and recorded on the
    /// airings (and fails them when `audio.hook_required`).
    pub(super) async fn amplifier_on(&self) -> Option<HookOutcome> {
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
    pub(super) async fn amplifier_off(&self, run: &mut Run, slot: Option<&str>) -> Result<(), EngineError> {
        run.amplifier = Amplifier::Off;
        let Some(argv) = &self.config.audio.amplifier.after_air else { return Ok(()) };
        let outcome = amplifier::run(argv, amplifier::HOOK_TIMEOUT).await;
        if let Some(detail) = &outcome.detail {
            tracing::error!("amplifier hook after_air failed: {detail}");
            self.append(events::amplifier_hook_failed("after_air", slot, &outcome, self.clock.synchronized())).await?;
        }
        Ok(())
    }

    /// Airs every bulletin queued "now" at once, outside any slot, oldest first.
    pub(super) async fn air_queued_now(&mut self, run: &mut Run) -> Result<(), EngineError> {
        loop {
            let pending = self.store.call(|s| s.pending_queue(Wanted::Now)).await?;
            if pending.is_empty() || run.stopping {
                return Ok(());
            }
            // Inside a pre-empted slot the amplifier is already on.
            let own_block = matches!(run.amplifier, Amplifier::Off);
            let mut release_at = None;
            if own_block {
                run.amplifier = Amplifier::On { before_air: self.amplifier_on().await };
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
                // Retired since it was queued (an operator's, or an office's withdrawal): used up,
                // never aired, as "next slot" items are.
                let Some(clip) = clip.filter(|c| c.retired_at.is_none()) else { continue };
                tracing::warn!(clip = clip.id, title = %clip.meta.title, "airing a bulletin queued now");
                let plan =
                    AiringPlan::new(&clip, None, self.gain_db(&clip)).with_before_air(run.amplifier.before_air());
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
    pub(super) fn gain_db(&self, clip: &Clip) -> f64 {
        let headroom = -clip.audio.peak_dbfs.max(clip.audio.true_peak_dbfs);
        (self.config.audio.target_lufs - clip.audio.loudness_lufs).min(headroom)
    }

    /// Records an airing that was planned but could not be played, with why.
    pub(super) async fn record_unplayed(&self, plan: &AiringPlan, reason: String) -> Result<(), EngineError> {
        let synced = self.clock.synchronized();
        let seq = self.append(events::airing_started(plan, synced)).await?;
        let ended_at = Some(self.clock.now().timestamp_millis());
        let evidence = AiringEvidence::unmeasured(AiringStatus::Failed, ended_at, 0, reason);
        self.append(events::airing_ended(seq, plan, &evidence, synced)).await?;
        Ok(())
    }

    /// Takes a clip that cannot be played off the air, so the next slots air something else;
    /// the proof log's `clip_retired` (with the reason) tells the operator.
    pub(super) async fn set_aside(&self, clip: &Clip, reason: String) -> Result<(), EngineError> {
        tracing::error!(clip = clip.id, title = %clip.meta.title, "clip set aside: {reason}");
        let (id, now) = (clip.id, self.clock.now());
        self.store.call(move |s| s.retire_clip(id, now, Some(&reason))).await?;
        Ok(())
    }

    /// Plays one clip, released to the device at `start_at` if given (else at once), and
    /// records it. Returns its status, and what went wrong that matters for the rest of the
    /// slot (a clip set aside here; a dead device for the caller to act on).
    pub(super) async fn air(
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
        let item = PlayItem {
            path,
            gain_db: plan.gain_cdb as f64 / 100.0,
            planned,
            start_after,
            requested: std::time::Instant::now(),
            stop: stop.clone(),
        };
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
                    run.supervisor.alive();
                    let played = progress.played().as_millis() as u64;
                    self.beat(run, self.clock.now(), Some((seq, played))).await?;
                }
                _ = tokio::time::sleep_until(give_up) => break None,
                () = self.live.rung() => {
                    let pending = self.store.call(|s| s.pending_now()).await?;
                    let wanted = match preemptible {
                        Preemptible::ByEmergency => pending.emergency,
                        Preemptible::ByAnyNow => pending.any,
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
        // Every ending says why it was not complete: the advice above is once a run, the reason
        // (a device that failed again, a stall) is each time.
        let reason = evidence.reason.as_deref().unwrap_or("");
        tracing::info!(
            clip = plan.clip_id,
            status = evidence.status.as_str(),
            played_ms = evidence.played_ms,
            reason,
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
