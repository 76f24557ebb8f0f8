//! What `loa run` does before its first slot: wait for a clock the log can trust, check the
//! stored chain, close airings a power cut left open, and take in `[[preload]]` clips.

use super::*;

impl Engine {
    /// A box without a real-time clock can boot with a date far in the past. If the clock
    /// reads earlier than the last recorded event and is not synchronised, wait (at most
    /// `clock.sync_wait_seconds`) for NTP before writing or airing anything. Returns how it
    /// went, or `None` if asked to stop meanwhile.
    pub(super) async fn wait_for_trusted_clock(
        &self,
        supervisor: &Supervisor,
    ) -> Result<Option<ClockAtStart>, EngineError> {
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
    pub(super) async fn check_chain(&self, scope: chain::Scope) -> Result<(), EngineError> {
        let now = self.clock.now();
        let started = std::time::Instant::now();
        match self.store.call(move |s| chain::check_stored_log(s, now, scope)).await? {
            Some(damage) => tracing::error!("{damage}"),
            None => tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "proof log checked"),
        }
        Ok(())
    }

    /// After a crash or power cut: close every airing left open, with what the last heartbeat
    /// measured of it.
    pub(super) async fn close_unfinished_airings(&self, previous: Option<Heartbeat>) -> Result<(), EngineError> {
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

    /// A log that no longer holds what the office signed a receipt for was restored from an old
    /// copy (or replaced): said loudly, in the log itself, once per receipt.
    pub(super) async fn check_receipt(&self) -> Result<(), EngineError> {
        let (data_dir, office) = (self.config.station.data_dir.clone(), self.config.office);
        let behind = self
            .store
            .call(move |s| {
                let Some(receipt) = crate::audit::receipt::log_behind(&data_dir, s, office.as_ref())? else {
                    return Ok(None);
                };
                if s.receipt_gap_recorded(receipt.head_seq)? {
                    return Ok(None);
                }
                Ok::<_, StoreError>(Some((receipt, s.head()?.0)))
            })
            .await?;
        if let Some((receipt, head_seq)) = behind {
            tracing::error!(
                office = %receipt.office,
                receipt_seq = receipt.head_seq,
                head_seq,
                "this log does not hold what the auditing office signed for: the database was restored from an \
                 old copy or replaced; the events the office holds beyond seq {head_seq} are missing here"
            );
            let fields = events::log_behind_receipt(&receipt.office, receipt.head_seq, &receipt.head_hash, head_seq);
            self.append(fields).await?;
        }
        Ok(())
    }

    /// Adds the config's `[[preload]]` bulletins that are not in the library yet. The copy and
    /// the decode run on the store thread (at start, before any slot), not on the runtime.
    pub(super) async fn preload(&self) {
        for preload in &self.config.preload {
            let (library, file, meta, now) =
                (self.library.clone(), preload.file.clone(), preload.meta.clone(), self.clock.now());
            let admitted = self.store.call(move |s| library.admit_file(&file, &meta, s, now)).await;
            match admitted {
                Ok(inserted) => tracing::debug!(?inserted, "preloaded"),
                Err(IngestError::Rejected(r)) => tracing::warn!(file = %preload.file.display(), "preload refused: {r}"),
                Err(e) => tracing::warn!(file = %preload.file.display(), "cannot preload: {e}"),
            }
        }
    }
}
