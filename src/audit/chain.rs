//! The station's check of its own proof log. A log that was edited or damaged under the station
//! (a dropped trigger and an UPDATE, a bad sector) must never be exported, reported or built upon
//! as if whole: the station checks it with the same verifier the auditor uses, at start (every
//! hash and link; signatures after the last checked seq, kept in the store), periodically, and
//! before every export, and records what it finds as a signed `log_damaged` event.

use chrono::{DateTime, Utc};

use crate::proof::events::{self, Damage};
use crate::proof::{Broken, ChainVerifier, Expect, SealedEvent, Verified, parse_public_key};
use crate::store::{EventQuery, Store, StoreError};

/// Events read and checked per step, so memory stays bounded on a long log.
const CHUNK: u32 = 2000;

/// A check of the stored events that follow `after_seq`, set up on the store's thread and run
/// wherever the work may go (the HTTP API runs it off the store thread).
pub struct RangeCheck {
    verifier: ChainVerifier,
}

impl RangeCheck {
    /// Events after `after_seq` must link to its stored hash. Signatures of events up to the
    /// station's last checked seq are not checked again (their bytes, hashes and links are).
    pub fn after(store: &Store, after_seq: i64) -> Result<RangeCheck, StoreError> {
        let checked_through = store.chain_checked()?.map_or(0, |(seq, _, _)| seq);
        RangeCheck::checking_signatures_after(store, after_seq, checked_through)
    }

    fn checking_signatures_after(
        store: &Store,
        after_seq: i64,
        signatures_checked_through: i64,
    ) -> Result<RangeCheck, StoreError> {
        // The key in force after `after_seq`; before any declaration, the first one declared. A
        // lost key that no event ever named leaves the events before its replacement with no key
        // to check their signatures by (their bytes, hashes and links are still checked).
        let own = store.public_key_hex();
        let (key, unknown_key_through) = match store.declared_key(after_seq)? {
            Some(key) => (key, 0),
            None => match store.first_key_declaration()? {
                Some((_, Some(key))) => (key, 0),
                Some((replaced_at, None)) => (own.clone(), replaced_at - 1),
                None => (own.clone(), 0),
            },
        };
        let expect = Expect {
            head: None,
            station_id: Some(store.station_id().to_owned()),
            // The station's own key replacements were made here, on purpose.
            accepted_replacements: store.key_replacements()?.into_iter().collect(),
            signatures_checked_through: signatures_checked_through.max(unknown_key_through),
        };
        // A declared key that does not parse fails on its own event; check with ours meanwhile.
        let key = parse_public_key(&key).or_else(|_| parse_public_key(&own)).expect("our own key parses");
        let verifier = match after_seq {
            0 => ChainVerifier::new(key, expect),
            _ => {
                let hash = store.event_hash(after_seq)?.unwrap_or_default();
                ChainVerifier::after(key, (after_seq, hash), expect)
            }
        };
        // Signatures in batches (a year's log at first start on a slow CPU): a failing batch is
        // checked one by one, and its first bad event is named before any later fault.
        Ok(RangeCheck { verifier: verifier.deferring_signatures() })
    }

    /// Checks `events`, which must be every stored event after `after_seq` up to the last one
    /// given; `None` when there are none.
    pub fn check(mut self, events: &[SealedEvent]) -> Result<Option<Verified>, Damage> {
        if events.is_empty() {
            return Ok(None);
        }
        self.feed(events)?;
        self.finish().map(Some)
    }

    fn feed(&mut self, events: &[SealedEvent]) -> Result<(), Damage> {
        for event in events {
            if let Err(broken) = self.verifier.stored(event.seq as usize, event) {
                // A bad signature still waiting in the batch comes first: it is the one named.
                let first = self.verifier.flush().err().unwrap_or(broken);
                return Err(damage(first, Some(event)));
            }
        }
        Ok(())
    }

    /// The last batch of signatures checked, and the range summed up.
    fn finish(self) -> Result<Verified, Damage> {
        self.verifier.finish().map_err(|broken| damage(broken, None))
    }
}

/// `broken` as damage found at `at` — or at the earlier event it names (a signature from the
/// batch, whose stored hash is the one computed: only its signature is wrong).
fn damage(broken: Broken, at: Option<&SealedEvent>) -> Damage {
    let computed_hash = broken.computed_hash.unwrap_or_default();
    match at.filter(|at| broken.seq.is_none_or(|seq| seq == at.seq)) {
        Some(at) => Damage { seq: at.seq, stored_hash: at.hash.clone(), computed_hash, why: broken.why },
        None => Damage {
            seq: broken.seq.unwrap_or_default(),
            stored_hash: computed_hash.clone(),
            computed_hash,
            why: broken.why,
        },
    }
}

/// The check of a page of stored events before it is exported or counted: every stored event
/// from the page's first to its last (a page filtered by dates may skip some), linked to the
/// stored hash of the event before the first. Set up on the store's thread; run anywhere.
pub struct PageCheck {
    check: Option<RangeCheck>,
    /// The stored events between the page's first and last, when the page skips some.
    between: Option<Vec<SealedEvent>>,
}

impl PageCheck {
    pub fn of(store: &Store, page: &[SealedEvent]) -> Result<PageCheck, StoreError> {
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(PageCheck { check: None, between: None });
        };
        let after = first.seq - 1;
        let between = if last.seq - after != page.len() as i64 {
            Some(store.events(EventQuery { after_seq: after, through_seq: Some(last.seq), ..EventQuery::default() })?)
        } else {
            None
        };
        Ok(PageCheck { check: Some(RangeCheck::after(store, after)?), between })
    }

    pub fn check(self, page: &[SealedEvent]) -> Result<(), Damage> {
        match self.check {
            Some(check) => check.check(self.between.as_deref().unwrap_or(page)).map(drop),
            None => Ok(()),
        }
    }
}

/// Checks the whole log on this thread, in chunks: every event's bytes, hash and link, and the
/// signatures after `signatures_checked_through`.
pub fn check_all(
    store: &Store,
    signatures_checked_through: i64,
) -> Result<Result<Option<Verified>, Damage>, StoreError> {
    let (head, _) = store.head()?;
    let mut check = RangeCheck::checking_signatures_after(store, 0, signatures_checked_through)?;
    let mut done = 0;
    while done < head {
        let query =
            EventQuery { after_seq: done, through_seq: Some(head), limit: Some(CHUNK), ..EventQuery::default() };
        let events = store.events(query)?;
        let Some(last) = events.last() else { break };
        done = last.seq;
        if let Err(damage) = check.feed(&events) {
            return Ok(Err(damage));
        }
    }
    if head == 0 {
        return Ok(Ok(None));
    }
    Ok(check.finish().map(Some))
}

/// How much of the stored log a check covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every event's bytes, hash and link; signatures after the last checked seq (at start).
    Whole,
    /// Only the events after the last checked seq (hourly, while running; an export checks the
    /// older events it holds itself).
    New,
}

/// The station's own check: puts back a removed append-only guard (and then checks the whole log
/// and every signature again), checks the log, and keeps how far it got. Returns the damage
/// found, recorded.
pub fn check_stored_log(store: &mut Store, now: DateTime<Utc>, scope: Scope) -> Result<Option<Damage>, StoreError> {
    let guard_was_removed = store.restore_append_only_guard()?;
    if guard_was_removed {
        tracing::error!("the proof log's append-only triggers had been removed; put back, checking every event");
    }
    // A checkpoint counts only if the event it names is still the one it checked; if it is not,
    // the log was cut or rewritten behind the station's back.
    let checkpoint = store.chain_checked()?;
    let still_there = match &checkpoint {
        Some((seq, hash, _)) => store.event_hash(*seq)?.as_deref() == Some(hash.as_str()),
        None => true,
    };
    let checked_through = match &checkpoint {
        Some((seq, _, _)) if !guard_was_removed && still_there => *seq,
        _ => 0,
    };
    let tampered = match (guard_was_removed, still_there) {
        (true, _) => Some("the append-only triggers of the proof log had been removed (put back now)"),
        (false, false) => {
            Some("the proof log no longer holds the event its last check ended at: it was cut or rewritten")
        }
        (false, true) => None,
    };
    let outcome = if scope == Scope::Whole || checked_through == 0 {
        check_all(store, checked_through)?
    } else {
        let events = store.events(EventQuery { after_seq: checked_through, ..EventQuery::default() })?;
        RangeCheck::after(store, checked_through)?.check(&events)
    };
    if let Some(reason) = tampered {
        // Said in the log itself (signed, so an office that is pushed to learns it at once).
        tracing::error!("{reason}; recording log_tampered");
        let checked = checkpoint.as_ref().map(|(seq, hash, _)| (*seq, hash.as_str()));
        let head = store.head()?.0;
        store.append(now, events::log_tampered(reason, checked, head))?;
    }
    match outcome {
        Ok(Some(verified)) => {
            store.set_chain_checked(verified.last_seq, &verified.last_hash, &verified.public_key)?;
            Ok(None)
        }
        Ok(None) => Ok(None),
        Err(damage) => {
            record(store, &damage, now)?;
            Ok(Some(damage))
        }
    }
}

/// Appends a signed `log_damaged` event for `damage`, once per damaged seq.
pub fn record(store: &mut Store, damage: &Damage, now: DateTime<Utc>) -> Result<(), StoreError> {
    tracing::error!("{damage}; recording it in the log");
    if !store.damage_recorded(damage.seq)? {
        store.append(now, events::log_damaged(damage))?;
    }
    Ok(())
}
