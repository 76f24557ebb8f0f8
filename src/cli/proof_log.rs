//! The proof log from the command line: `airtime` (export), `verify` (the office's offline
//! check), `compliance` (period reports), `backup`, and the key commands.

use super::*;

pub(super) fn airtime(
    config: &Config,
    after_seq: i64,
    (from, to): (Option<NaiveDate>, Option<NaiveDate>),
    format: Format,
    damaged_ok: bool,
    clock: &dyn Clock,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (mut store, _) = open_station(config)?;
    let (from, to) = export::local_date_bounds(from, to, config.station.timezone);
    let (seq, hash) = store.head()?;
    let head = Head { seq, hash };
    let query = EventQuery { after_seq, from, to, limit: None, through_seq: Some(head.seq) };
    let events = store.events(query)?;
    // What is exported is checked first, from the event before it.
    let check = chain::PageCheck::of(&store, &events)?;
    if let Err(damage) = check.check(&events) {
        // Whoever finds damage records it: the running daemon's /healthz reads it from the log.
        chain::record(&mut store, &damage, clock.now())?;
        if !damaged_ok {
            return Err(failed(format!(
                "{damage} (stored hash {}, computed {}). Nothing was exported: the log is not whole. \
                 Keep a copy of {} and restore the latest `loa backup`; --damaged-ok exports it anyway",
                damage.stored_hash,
                damage.computed_hash,
                config.station.data_dir.display()
            )));
        }
        eprintln!("warning: {damage}; exported anyway (--damaged-ok): verify will refuse it at seq {}", damage.seq);
    }
    eprintln!("head {}", head.to_arg());
    export::write(out, format, &events, &head, &store.public_key_hex(), config.station.timezone, None)
        .map_err(write_err)
}

pub(super) fn backup(config: &Config, path: &Path, clock: &dyn Clock, out: &mut dyn Write) -> Result<(), Failure> {
    let destination = if path.is_dir() {
        // Dated; two backups in one second get -2, -3 … rather than failing.
        let stamp = clock.now().with_timezone(&config.station.timezone).format("%Y%m%d-%H%M%S");
        let named = |n: u32| {
            let suffix = if n == 1 { String::new() } else { format!("-{n}") };
            path.join(format!("loa-{}-{stamp}{suffix}.sqlite", config.station.id))
        };
        (1..).map(named).find(|candidate| !candidate.exists()).expect("a free name")
    } else {
        path.to_owned()
    };
    if destination.exists() {
        return Err(failed(format!(
            "{} exists; loa backup does not overwrite: give a new file name or a directory",
            destination.display()
        )));
    }
    let (store, _) = open_station(config)?;
    let summary =
        store.backup(&destination).map_err(|e| failed(format!("cannot back up to {}: {e}", destination.display())))?;
    let data_dir = config.station.data_dir.display();
    let text = format!(
        "backup: {} — {} events (last seq {}), {} clips; integrity ok\n\
         also keep {data_dir}/station.key (the station's signing key, secret) and {data_dir}/clips/ (the audio files)\n",
        destination.display(),
        summary.events,
        summary.last_seq.map_or_else(|| "none".to_owned(), |s| s.to_string()),
        summary.clips,
    );
    out.write_all(text.as_bytes()).map_err(write_err)
}

pub(super) fn verify(file: &Path, public_key: &str, expect: Expect, out: &mut dyn Write) -> Result<(), Failure> {
    let key = proof::parse_public_key(public_key).map_err(|e| failed(format!("--public-key: {e}")))?;
    let name = file.display();
    // Read as it comes: a log of millions of events is checked in flat memory.
    let (verified, head) = if file == Path::new("-") {
        export::verify_reader(io::stdin().lock(), key, expect)
    } else {
        let opened = std::fs::File::open(file).map_err(|e| failed(format!("cannot read {name}: {e}")))?;
        export::verify_reader(io::BufReader::with_capacity(1 << 16, opened), key, expect)
    }
    .map_err(|e| failed(format!("{name}: {e}")))?;
    let mut text = format!(
        "ok: {} events, seq {}..{} of station {}: encoding, hashes, chain and signatures hold\n",
        verified.events, verified.first_seq, verified.last_seq, verified.station_id
    );
    for change in &verified.key_changes {
        text.push_str(&format!("key: {} at seq {}: {} -> {}\n", change.kind, change.seq, change.from, change.to));
    }
    if !verified.key_changes.is_empty() {
        text.push_str(&format!("pin the station's key now in force: {}\n", verified.public_key));
    }
    if let Some(head) = &head {
        if head.seq < verified.last_seq || (head.seq == verified.last_seq && head.hash != verified.last_hash) {
            return Err(failed(format!(
                "{name}: the page's head (seq {} hash {}) contradicts its own events (last seq {} hash {})",
                head.seq, head.hash, verified.last_seq, verified.last_hash
            )));
        }
        if head.seq > verified.last_seq {
            text.push_str(&format!(
                "the station's head is seq {}: {} more to pull\n",
                head.seq,
                head.seq - verified.last_seq
            ));
        }
    }
    text.push_str(&format!(
        "head {}:{} (next time: pull after_seq={} and pass --expect-head {}:{})\n",
        verified.last_seq,
        verified.last_hash,
        verified.last_seq - 1,
        verified.last_seq,
        verified.last_hash
    ));
    out.write_all(text.as_bytes()).map_err(write_err)
}

pub(super) fn run_key(
    command: KeyCommand,
    config: &Config,
    clock: &dyn Clock,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (what, choice) = match command {
        KeyCommand::Rotate => ("loa key rotate", KeyChoice::Station),
        KeyCommand::Replace { .. } => ("loa key replace --lost", KeyChoice::ReplacingLost),
    };
    let _lock = lock_data_dir(config, what)?;
    let data_dir = &config.station.data_dir;
    let mut store = Store::open_with(data_dir, &config.station.id, choice)?;
    let now = clock.now();
    let text = match command {
        KeyCommand::Rotate => {
            let old = store.public_key_hex();
            let new = StationKey::begin_rotation(data_dir)?;
            let event = store.append(now, events::key_rotated(&old, &new.public_key_hex()))?;
            let log = store.log_keys(event.seq)?;
            proof::finish_rotation(data_dir, &log)?;
            format!(
                "key rotated at seq {}: {old} -> {}\nback up {} now; the auditing office's verify follows the rotation\n",
                event.seq,
                new.public_key_hex(),
                data_dir.join(proof::KEY_FILE).display()
            )
        }
        KeyCommand::Replace { .. } => {
            let old = store.log_keys(i64::MAX)?.declared;
            let new = store.public_key_hex();
            let event = store.append(now, events::key_replaced(old.as_deref(), &new))?;
            format!(
                "key replaced at seq {}: the log goes on with {new}\ntell the auditing office: its verify stops at \
                 seq {} until it accepts the replacement (--accept-key-replacement {}); back up {} now\n",
                event.seq,
                event.seq,
                event.seq,
                data_dir.join(proof::KEY_FILE).display()
            )
        }
    };
    out.write_all(text.as_bytes()).map_err(write_err)
}

/// `loa compliance --period P`: a report from the log, refused (and the damage recorded) when
/// the log does not verify.
pub(super) fn compliance(
    config: &Config,
    period: &str,
    format: ReportFormat,
    clock: &dyn Clock,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let period =
        calendar::parse_period(period, config.station.timezone).map_err(|e| failed(format!("--period: {e}")))?;
    let (mut store, _) = open_station(config)?;
    let report = match compliance::from_store(&store, config, &period, clock.now()) {
        Ok(report) => report,
        Err(compliance::ReportError::Damaged(damage)) => {
            chain::record(&mut store, &damage, clock.now())?;
            return Err(failed(format!("{damage}; no report is made from a damaged log")));
        }
        Err(e) => return Err(failed(e.to_string())),
    };
    out.write_all(&render::station::render(&report, format, &render::Labels::of(config)).0).map_err(write_err)
}
