//! The command line: raw flags (clap) here, validated settings in `config`.
//!
//! The verbs and flags are a contract other tools script against; add to them, never rename.
//! Exit status: 0 success, 1 the command failed (e.g. a rejected clip), 2 bad usage or config.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use tokio::sync::watch;

use crate::air::engine::{Engine, WALL_CLOCK_POLL};
use crate::air::live::Live;
use crate::air::scheduler;
use crate::audio::player::PlayerHandle;
use crate::audit::chain;
use crate::audit::compliance::{self, ReportFormat};
use crate::config::{self, Config, ConfigError};
use crate::http::{self, AppState};
use crate::library::ingest::{IngestError, Library};
use crate::model::clip::{self, Clip, ClipMeta, Priority};
use crate::model::token::{self, Role};
use crate::ops::lock::{DataDirLock, LockError};
use crate::proof::events;
use crate::proof::export::Head;
use crate::proof::export::{self, Format};
use crate::proof::{self, Expect, StationKey};
use crate::store::{self, EventQuery, Inserted, KeyChoice, Store, StoreHandle};
use crate::time::calendar::{self, QuotaPeriod};
use crate::time::clock::{Clock, SystemClock};

#[derive(Debug, Parser)]
#[command(name = "loa", version, about = "Plans, airs and proves bulletins at a community loudspeaker station")]
pub struct Args {
    /// Station config file (TOML).
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the station: air the slots, record every airing as signed proof. Stops on SIGTERM/SIGINT.
    Run,
    /// Validate the config and show the station, its slots and the next 10 slot times.
    CheckConfig,
    /// The station's identity and the public key that verifies its proof log.
    Station {
        #[arg(long)]
        json: bool,
    },
    /// Export the proof log (checked first: a damaged log is not exported as if whole). The
    /// station's head (`SEQ:HASH`) is written on standard error.
    Airtime {
        /// Only events after this seq (the last seq of the previous pull).
        #[arg(long, value_name = "N", default_value_t = 0)]
        after_seq: i64,
        /// First local date (YYYY-MM-DD, station time, inclusive).
        #[arg(long, value_parser = parse_from_date)]
        from: Option<NaiveDate>,
        /// Last local date (YYYY-MM-DD, station time, inclusive).
        #[arg(long, value_parser = parse_to_date)]
        to: Option<NaiveDate>,
        #[arg(long, default_value = "jsonl", value_parser = parse_format)]
        format: Format,
        /// Export even if the log is damaged (the damage is named on standard error, and
        /// `verify` will refuse the file at the damaged seq).
        #[arg(long)]
        damaged_ok: bool,
    },
    /// Compliance report for a period, from the proof log.
    Compliance {
        /// 2026-W47, 2026-11, 2026-Q4, 2026-H2 or 2026 (station time).
        #[arg(long)]
        period: String,
        #[arg(long, default_value = "json", value_parser = parse_report_format)]
        format: ReportFormat,
    },
    /// Check an exported log (JSON Lines, or a JSON page, byte for byte as the station sent it)
    /// offline: encoding, hashes, chain, signatures, station and keys.
    Verify {
        /// The exported file, or - for standard input.
        file: PathBuf,
        /// The station's public key (hex), read once on the box with `loa station` and pinned;
        /// with --expect-head, the key in force at that head (the last verify prints it).
        #[arg(long, value_name = "HEX")]
        public_key: String,
        /// The last event you hold (`SEQ:HASH`): the file must begin with it. Pull with
        /// `after_seq` = SEQ - 1 so each pull overlaps the last by one event. Without it the
        /// file must begin at seq 1.
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_head)]
        expect_head: Option<(i64, String)>,
        /// Every event must carry this station id.
        #[arg(long, value_name = "ID")]
        station_id: Option<String>,
        /// Accept the `key_replaced` event at this seq (a lost key the station replaced), once
        /// you have confirmed it with the station. Repeatable.
        #[arg(long, value_name = "SEQ")]
        accept_key_replacement: Vec<i64>,
        /// Replaced by --expect-head.
        #[arg(long, hide = true)]
        expect_prev: Option<String>,
    },
    /// Copy the station database (proof log, clips' records, tokens) to PATH, consistently, even
    /// while `loa run` is on air. PATH may be a directory: a dated file name is made in it.
    Backup {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Manage the bulletin library.
    #[command(subcommand)]
    Clip(ClipCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Change the station's signing key, in the log itself (stop `loa run` first).
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Start a new key: a `key_rotated` event signed by the current key names the new one, which
    /// `verify` follows. Keep a backup of the new station.key.
    Rotate,
    /// Only when station.key is truly lost (no backup): start a new key with a `key_replaced`
    /// event. Nothing proves the old key agreed, so the auditing office must accept the break
    /// by its seq (`verify --accept-key-replacement SEQ`).
    Replace {
        /// Required: says the key is lost.
        #[arg(long, required = true)]
        lost: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token and print it once (only its SHA-256 is kept).
    Create {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Who holds it, e.g. "Chị Lan, văn phòng phường".
        #[arg(long)]
        label: String,
        /// Print a one-time code (valid 10 minutes) and a QR code instead: the phone's page
        /// takes the code and receives the token itself, so nobody types 68 characters.
        #[arg(long)]
        pair: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it stops working at once.
    Revoke { id: i64 },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

#[derive(Debug, Subcommand)]
enum ClipCommand {
    /// Check an MP3 by decoding all of it, then add it to the library.
    Add {
        file: PathBuf,
        #[arg(long)]
        title: String,
        /// e.g. cchc
        #[arg(long)]
        topic: String,
        /// Language code: vi, hmn (Mông), tay (Tày), km (Khmer), ...
        #[arg(long, default_value = "vi")]
        lang: String,
        #[arg(long, default_value = "normal", value_parser = parse_priority)]
        priority: Priority,
        /// First local date the clip may air (YYYY-MM-DD, inclusive).
        #[arg(long, value_parser = parse_valid_from)]
        valid_from: Option<NaiveDate>,
        /// Last local date the clip may air (YYYY-MM-DD, inclusive).
        #[arg(long, value_parser = parse_valid_until)]
        valid_until: Option<NaiveDate>,
    },
    /// List the library, retired clips included.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one clip.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Stop airing a clip. It stays in the library: proof records refer to it.
    Retire { id: i64 },
}

fn parse_priority(text: &str) -> Result<Priority, String> {
    text.parse()
}

fn parse_valid_from(text: &str) -> Result<NaiveDate, String> {
    clip::parse_date("valid_from", text).map_err(|e| e.message)
}

fn parse_valid_until(text: &str) -> Result<NaiveDate, String> {
    clip::parse_date("valid_until", text).map_err(|e| e.message)
}

fn parse_from_date(text: &str) -> Result<NaiveDate, String> {
    clip::parse_date("from", text).map_err(|e| e.message)
}

fn parse_to_date(text: &str) -> Result<NaiveDate, String> {
    clip::parse_date("to", text).map_err(|e| e.message)
}

fn parse_head(text: &str) -> Result<(i64, String), String> {
    let usage = || format!("\"{text}\" is not SEQ:HASH (the seq and the 64-hex-digit hash of the last event you hold)");
    let (seq, hash) = text.split_once(':').ok_or_else(usage)?;
    let seq: i64 = seq.parse().ok().filter(|s| *s >= 1).ok_or_else(usage)?;
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(usage());
    }
    Ok((seq, hash.to_owned()))
}

fn parse_format(text: &str) -> Result<Format, String> {
    text.parse()
}

fn parse_report_format(text: &str) -> Result<ReportFormat, String> {
    text.parse()
}

/// A command's failure, with the exit status it maps to.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad usage, or a station that must not be started twice.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    /// Standard output could not be written (kept whole: a closed pipe is not a failure).
    #[error("cannot write output: {0}")]
    Output(io::Error),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Config(_) | Failure::Usage(_) => ExitCode::from(2),
            Failure::Failed(_) | Failure::Output(_) => ExitCode::from(1),
        }
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure::Failed(message.into())
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    match run(args, &SystemClock, &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.exit_code()
        }
    }
}

fn run(args: Args, clock: &dyn Clock, out: &mut dyn Write) -> Result<(), Failure> {
    // `verify` is the district's tool: it needs no station config.
    if let Command::Verify { file, public_key, expect_head, station_id, accept_key_replacement, expect_prev } =
        &args.command
    {
        if expect_prev.is_some() {
            return Err(Failure::Usage(
                "--expect-prev was replaced by --expect-head SEQ:HASH: the last event you hold, which the \
                 next pull (after_seq = SEQ - 1) must begin with"
                    .into(),
            ));
        }
        let expect = Expect {
            head: expect_head.clone(),
            station_id: station_id.clone(),
            accepted_replacements: accept_key_replacement.iter().copied().collect(),
            signatures_checked_through: 0,
        };
        return verify(file, public_key, expect, out);
    }
    let config = Config::load(&args.config)?;
    match args.command {
        Command::Run => run_station(config),
        Command::CheckConfig => check_config(&config, clock, out),
        Command::Station { json } => station(&config, json, out),
        Command::Airtime { after_seq, from, to, format, damaged_ok } => {
            airtime(&config, after_seq, (from, to), format, damaged_ok, clock, out)
        }
        Command::Key(command) => run_key(command, &config, clock, out),
        Command::Clip(command) => run_clip(command, &config, clock, out),
        Command::Token(command) => run_token(command, &config, clock, out),
        Command::Backup { path } => backup(&config, &path, clock, out),
        Command::Compliance { period, format } => {
            let period = calendar::parse_period(&period, config.station.timezone)
                .map_err(|e| failed(format!("--period: {e}")))?;
            let (mut store, _) = open_station(&config)?;
            let report = match compliance::from_store(&store, &config, &period, clock.now()) {
                Ok(report) => report,
                Err(compliance::ReportError::Damaged(damage)) => {
                    chain::record(&mut store, &damage, clock.now()).map_err(|e| failed(e.to_string()))?;
                    return Err(failed(format!("{damage}; no report is made from a damaged log")));
                }
                Err(e) => return Err(failed(e.to_string())),
            };
            out.write_all(&compliance::render(&report, format).0).map_err(write_err)
        }
        Command::Verify { .. } => unreachable!("handled above"),
    }
    .or_else(|failure| match failure {
        // A closed stdout (e.g. `| head`) is not the command failing.
        Failure::Output(ref e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Err(other),
    })
}

fn write_err(e: io::Error) -> Failure {
    Failure::Output(e)
}

fn check_config(config: &Config, clock: &dyn Clock, out: &mut dyn Write) -> Result<(), Failure> {
    let s = &config.station;
    let mut text = format!(
        "{}: OK\nstation   {} — {}\ntimezone  {}\ndata_dir  {}\naudio     device \"{}\", target {:.1} LUFS\nhttp      {} (uploads up to {} MiB)\n",
        config.path.display(),
        s.id,
        s.name,
        s.timezone,
        s.data_dir.display(),
        config.audio.device,
        config.audio.target_lufs,
        config.http.listen,
        config.http.max_upload_mib,
    );
    text.push_str(&format!("slots ({}):\n", config.slots.len()));
    for slot in &config.slots {
        let peak = if slot.peak { "peak" } else { "" };
        text.push_str(&format!(
            "  {:<10} \"{}\"  up to {} min  {peak}\n",
            slot.name,
            slot.cron.text(),
            slot.max_minutes
        ));
    }
    text.push_str(&format!("quotas ({}):\n", config.quotas.len()));
    for quota in &config.quotas {
        let per = match quota.per {
            QuotaPeriod::Week => "ISO week",
            QuotaPeriod::Month => "month",
        };
        let language = quota.language.as_deref().map(|l| format!(" in \"{l}\"")).unwrap_or_default();
        let slots = if quota.peak_only { "peak slots only" } else { "any slot" };
        text.push_str(&format!("  {} × \"{}\"{language} per {per}, {slots}\n", quota.count, quota.topic));
    }
    let upcoming = scheduler::upcoming(&config.slots, s.timezone, clock.now(), 10);
    text.push_str(&format!("next {} slot times ({}):\n", upcoming.len(), s.timezone));
    for (slot, at) in upcoming {
        text.push_str(&format!(
            "  {}  {}\n",
            at.with_timezone(&s.timezone).format("%a %Y-%m-%d %H:%M:%S %:z"),
            config.slots[slot].name
        ));
    }
    out.write_all(text.as_bytes()).map_err(write_err)
}

fn run_station(config: Config) -> Result<(), Failure> {
    let config = Arc::new(config);
    // LOA_LOG overrides, e.g. LOA_LOG=debug. The decoders' own notes ("estimating duration")
    // are noise at a station.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    const DEFAULT_LOG: &str = "info,symphonia_core=error,symphonia_bundle_mp3=error,rodio=warn";
    let filter: tracing_subscriber::filter::Targets = std::env::var("LOA_LOG")
        .ok()
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| DEFAULT_LOG.parse().expect("default log directives parse"));
    // Under systemd (JOURNAL_STREAM names our stderr's journal socket) log to journald with
    // priorities and fields; anywhere else, plain lines on stderr.
    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| layer.with_syslog_identifier("loa".to_owned()));
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_target(false)
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
    });
    tracing_subscriber::registry().with(journald).with(stderr).with(filter).init();
    // One daemon per log, held until the process ends.
    let _lock = lock_data_dir(&config, "loa run")?;
    // Before anything writes: a damaged database must be noticed, never papered over.
    store::check_integrity(&config.station.data_dir).map_err(|e| failed(e.to_string()))?;
    let (store, library) = open_station(&config)?;
    // The API has its own connection to the store, its own thread and its own runtime: nothing a
    // client does (slow connections, heavy pages, floods) can delay a slot or a store write of
    // the engine's.
    let api_store = Store::open(&config.station.data_dir, &config.station.id).map_err(|e| failed(e.to_string()))?;
    let public_key = store.public_key_hex();
    let listener = std::net::TcpListener::bind(config.http.listen).map_err(|e| {
        failed(format!(
            "cannot listen on {} ({e}); change http.listen in {}",
            config.http.listen,
            config.path.display()
        ))
    })?;
    let address = listener.local_addr().map_err(|e| failed(format!("cannot read the bound address: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| failed(format!("cannot set up the listener: {e}")))?;
    let tls = match &config.http.tls {
        None => None,
        Some(source) => {
            let tls = http::tls::load(source, &config.station.data_dir).map_err(|e| failed(e.to_string()))?;
            let listener = std::net::TcpListener::bind(config.http.tls_listen).map_err(|e| {
                failed(format!(
                    "cannot listen on {} ({e}); change http.tls_listen in {}",
                    config.http.tls_listen,
                    config.path.display()
                ))
            })?;
            listener.set_nonblocking(true).map_err(|e| failed(format!("cannot set up the listener: {e}")))?;
            Some((listener, tls))
        }
    };
    let (stop, shutdown) = watch::channel(false);
    let stop = Arc::new(stop);
    let (clock, live): (Arc<dyn Clock>, _) = (Arc::new(SystemClock), Live::default());
    let api = AppState {
        config: Arc::clone(&config),
        store: StoreHandle::spawn(api_store),
        library: library.clone(),
        clock: Arc::clone(&clock),
        live: live.clone(),
        public_key,
        counters: Default::default(),
        schedule: Default::default(),
        auth_failures: Default::default(),
    };
    let mut server_shutdown = shutdown.clone();
    let server = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("http-worker")
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                tracing::info!(%address, "HTTP API listening");
                let tls = match tls {
                    Some((listener, tls)) => {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let address = listener.local_addr()?;
                        tracing::info!(%address, fingerprint = %tls.fingerprint, "HTTPS API listening");
                        Some((listener, tls))
                    }
                    None => None,
                };
                http::serve(listener, tls, api, async move {
                    let _ = server_shutdown.wait_for(|stop| *stop).await;
                })
                .await
            })
        })
        .map_err(|e| failed(format!("cannot start the HTTP thread: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(async {
        let on_signal = Arc::clone(&stop);
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            let _ = on_signal.send(true);
        });
        let store = StoreHandle::spawn(store);
        let player = Arc::new(PlayerHandle::spawn());
        let engine = Engine { config, store, player, longest_sleep: WALL_CLOCK_POLL, clock, library, live, shutdown };
        engine.run().await.map_err(|e| failed(format!("the station stopped: {e}")))
    });
    let _ = stop.send(true); // whatever ended the engine ends the API too
    match server.join() {
        Ok(Ok(())) => result,
        Ok(Err(e)) => result.and(Err(failed(format!("the HTTP API failed: {e}")))),
        Err(_) => result.and(Err(failed("the HTTP API thread panicked"))),
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
    }
}

fn station(config: &Config, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let (store, _) = open_station(config)?;
    let s = &config.station;
    let public_key = store.public_key_hex();
    // The certificate phones are to pin (made now if the station makes its own).
    let tls = config
        .http
        .tls
        .as_ref()
        .map(|source| http::tls::load(source, &s.data_dir).map_err(|e| failed(e.to_string())))
        .transpose()?;
    let fingerprint = tls.as_ref().map(|tls| tls.fingerprint.clone());
    if json {
        let value = serde_json::json!({
            "id": s.id, "name": s.name, "timezone": s.timezone.name(), "public_key": public_key,
            "tls_fingerprint": fingerprint,
        });
        return write_json(out, &value);
    }
    let mut text =
        format!("id          {}\nname        {}\ntimezone    {}\npublic_key  {public_key}\n", s.id, s.name, s.timezone);
    if let Some(fingerprint) = fingerprint {
        text.push_str(&format!("https       {} (certificate SHA-256 {fingerprint})\n", config.http.tls_listen));
    }
    out.write_all(text.as_bytes()).map_err(write_err)
}

fn airtime(
    config: &Config,
    after_seq: i64,
    (from, to): (Option<NaiveDate>, Option<NaiveDate>),
    format: Format,
    damaged_ok: bool,
    clock: &dyn Clock,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (mut store, _) = open_station(config)?;
    let store_error = |e: store::StoreError| failed(e.to_string());
    let (from, to) = export::local_date_bounds(from, to, config.station.timezone);
    let (seq, hash) = store.head().map_err(store_error)?;
    let head = Head { seq, hash };
    let query = EventQuery { after_seq, from, to, limit: None, through_seq: Some(head.seq) };
    let events = store.events(query).map_err(store_error)?;
    // What is exported is checked first, from the event before it.
    let check = chain::PageCheck::of(&store, &events).map_err(store_error)?;
    if let Err(damage) = check.check(&events) {
        // Whoever finds damage records it: the running daemon's /healthz reads it from the log.
        chain::record(&mut store, &damage, clock.now()).map_err(store_error)?;
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
    export::write(out, format, &events, &head, &store.public_key_hex(), config.station.timezone).map_err(write_err)
}

fn backup(config: &Config, path: &Path, clock: &dyn Clock, out: &mut dyn Write) -> Result<(), Failure> {
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

fn verify(file: &Path, public_key: &str, expect: Expect, out: &mut dyn Write) -> Result<(), Failure> {
    let key = proof::parse_public_key(public_key).map_err(|e| failed(format!("--public-key: {e}")))?;
    let text = if file == Path::new("-") {
        io::read_to_string(io::stdin()).map_err(|e| failed(format!("cannot read standard input: {e}")))?
    } else {
        std::fs::read_to_string(file).map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?
    };
    let name = file.display();
    let (verified, head) = export::verify(&text, key, expect).map_err(|e| failed(format!("{name}: {e}")))?;
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

fn lock_data_dir(config: &Config, what: &str) -> Result<DataDirLock, Failure> {
    let data_dir = create_data_dir(config)?;
    DataDirLock::acquire(data_dir, what).map_err(|e| match e {
        LockError::Held { .. } => Failure::Usage(e.to_string()),
        LockError::Io { .. } => failed(e.to_string()),
    })
}

fn run_key(command: KeyCommand, config: &Config, clock: &dyn Clock, out: &mut dyn Write) -> Result<(), Failure> {
    let (what, choice) = match command {
        KeyCommand::Rotate => ("loa key rotate", KeyChoice::Station),
        KeyCommand::Replace { .. } => ("loa key replace --lost", KeyChoice::ReplacingLost),
    };
    let _lock = lock_data_dir(config, what)?;
    let data_dir = &config.station.data_dir;
    let mut store = Store::open_with(data_dir, &config.station.id, choice).map_err(|e| failed(e.to_string()))?;
    let store_error = |e: store::StoreError| failed(e.to_string());
    let now = clock.now();
    let text = match command {
        KeyCommand::Rotate => {
            let old = store.public_key_hex();
            let new = StationKey::begin_rotation(data_dir).map_err(|e| failed(e.to_string()))?;
            let event = store.append(now, events::key_rotated(&old, &new.public_key_hex())).map_err(store_error)?;
            let log = store.log_keys(event.seq).map_err(store_error)?;
            proof::finish_rotation(data_dir, &log).map_err(|e| failed(e.to_string()))?;
            format!(
                "key rotated at seq {}: {old} -> {}\nback up {} now; the auditing office's verify follows the rotation\n",
                event.seq,
                new.public_key_hex(),
                data_dir.join(proof::KEY_FILE).display()
            )
        }
        KeyCommand::Replace { .. } => {
            let old = store.log_keys(i64::MAX).map_err(store_error)?.declared;
            let new = store.public_key_hex();
            let event = store.append(now, events::key_replaced(old.as_deref(), &new)).map_err(store_error)?;
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

/// The data directory, made if missing.
fn create_data_dir(config: &Config) -> Result<&Path, Failure> {
    let data_dir = &config.station.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| {
        failed(format!(
            "cannot create data_dir {}: {e}; check station.data_dir in {}",
            data_dir.display(),
            config.path.display()
        ))
    })?;
    Ok(data_dir)
}

fn open_station(config: &Config) -> Result<(Store, Library), Failure> {
    let data_dir = create_data_dir(config)?;
    let store = Store::open(data_dir, &config.station.id).map_err(|e| failed(e.to_string()))?;
    let library = Library::open(data_dir, config.clips)
        .map_err(|e| failed(format!("cannot prepare the clip library in {}: {e}", data_dir.display())))?;
    Ok((store, library))
}

fn run_clip(command: ClipCommand, config: &Config, clock: &dyn Clock, out: &mut dyn Write) -> Result<(), Failure> {
    match command {
        ClipCommand::Add { file, title, topic, lang, priority, valid_from, valid_until } => {
            let meta = ClipMeta { title, topic, language: lang, priority, valid_from, valid_until };
            meta.check().map_err(|e| failed(format!("--{}: {}", flag_name(e.field), e.message)))?;
            add_clip(&file, &meta, config, clock, out)
        }
        ClipCommand::List { json } => {
            let (store, _) = open_station(config)?;
            let clips = store.clips().map_err(|e| failed(e.to_string()))?;
            if json { write_json(out, &serde_json::json!({ "clips": clips })) } else { write_clip_table(out, &clips) }
        }
        ClipCommand::Show { id, json } => {
            let (store, _) = open_station(config)?;
            let clip = store.clip(id).map_err(|e| failed(e.to_string()))?.ok_or_else(|| no_such_clip(id))?;
            if json { write_json(out, &clip) } else { write_clip_details(out, &clip) }
        }
        ClipCommand::Retire { id } => {
            let (mut store, _) = open_station(config)?;
            let now = clock.now();
            let clip =
                store.retire_clip(id, now, None).map_err(|e| failed(e.to_string()))?.ok_or_else(|| no_such_clip(id))?;
            let retired_at = clip.retired_at.as_deref().unwrap_or_default();
            let line = if retired_at == crate::store::timestamp(now) {
                format!("clip {id} \"{}\" retired at {retired_at}; it will not air again\n", clip.meta.title)
            } else {
                format!("clip {id} \"{}\" was already retired at {retired_at}\n", clip.meta.title)
            };
            out.write_all(line.as_bytes()).map_err(write_err)
        }
    }
}

fn run_token(command: TokenCommand, config: &Config, clock: &dyn Clock, out: &mut dyn Write) -> Result<(), Failure> {
    let (mut store, _) = open_station(config)?;
    let store_error = |e: crate::store::StoreError| failed(e.to_string());
    match command {
        TokenCommand::Create { role, label, pair } => {
            let label = label.trim();
            if label.is_empty() {
                return Err(failed("--label: say who holds the token, e.g. \"Chị Lan, văn phòng phường\""));
            }
            if pair {
                return pair_token(&mut store, config, role, label, clock.now(), out);
            }
            let secret = token::generate().map_err(|e| failed(e.to_string()))?;
            let token = store.create_token(role, label, &token::digest(&secret), clock.now()).map_err(store_error)?;
            eprintln!("token {} ({}, \"{}\") created; it is shown only now:", token.id, role.as_str(), token.label);
            out.write_all(format!("{secret}\n").as_bytes()).map_err(write_err)
        }
        TokenCommand::List { json } => {
            let tokens = store.tokens().map_err(store_error)?;
            if json {
                return write_json(out, &serde_json::json!({ "tokens": tokens }));
            }
            let mut text = format!("{:>4}  {:<9} {:<8} {:<25} label\n", "id", "role", "status", "created_at");
            for t in &tokens {
                let status = if t.revoked_at.is_some() { "revoked" } else { "active" };
                text.push_str(&format!(
                    "{:>4}  {:<9} {status:<8} {:<25} {}\n",
                    t.id,
                    t.role.as_str(),
                    t.created_at,
                    t.label
                ));
            }
            out.write_all(text.as_bytes()).map_err(write_err)
        }
        TokenCommand::Revoke { id } => {
            let token = store
                .revoke_token(id, clock.now())
                .map_err(store_error)?
                .ok_or_else(|| failed(format!("there is no token {id}; `loa token list` shows the ids")))?;
            let line =
                format!("token {id} (\"{}\") revoked at {}\n", token.label, token.revoked_at.unwrap_or_default());
            out.write_all(line.as_bytes()).map_err(write_err)
        }
    }
}

/// How long a pairing code works.
const PAIRING_VALID: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

fn pair_token(
    store: &mut Store,
    config: &Config,
    role: Role,
    label: &str,
    now: chrono::DateTime<chrono::Utc>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let code = token::pairing_code().map_err(|e| failed(e.to_string()))?;
    let digest = token::digest(&token::normalise_code(&code));
    store.create_pairing(role, label, &digest, now, now + PAIRING_VALID).map_err(|e| failed(e.to_string()))?;
    // The address a phone on the LAN opens: HTTPS when it is on, the box's name for 0.0.0.0.
    let http = &config.http;
    let (scheme, address) = if http.tls.is_some() { ("https", http.tls_listen) } else { ("http", http.listen) };
    let host = if address.ip().is_unspecified() {
        crate::ops::sys::host_name().unwrap_or_else(|| "<địa chỉ của đài>".to_owned())
    } else {
        address.ip().to_string()
    };
    let link = format!("{scheme}://{host}:{}/#pair={code}", address.port());
    let qr = qrcode::QrCode::new(link.as_bytes())
        .map(|qr| qr.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build())
        .unwrap_or_default();
    let expires = (now + PAIRING_VALID).with_timezone(&config.station.timezone).format("%H:%M");
    let text = format!(
        "Mã ghép nối: {code}\n(dùng một lần, đến {expires}; {} \"{label}\")\nTrên điện thoại: mở {link}\nhoặc quét mã:\n{qr}\n",
        if role == Role::Operator { "cán bộ đài" } else { "cấp huyện, chỉ xem" }
    );
    out.write_all(text.as_bytes()).map_err(write_err)
}

fn add_clip(
    file: &Path,
    meta: &ClipMeta,
    config: &Config,
    clock: &dyn Clock,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut input = File::open(file).map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?;
    let size = input.metadata().map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?;
    if size.is_dir() {
        return Err(failed(format!("{} is a directory; give an MP3 file", file.display())));
    }
    let (mut store, library) = open_station(config)?;
    let mut staged = library.stage(size.len()).map_err(|e| match e.kind() {
        io::ErrorKind::StorageFull => failed(format!("{} was not added: {e}", file.display())),
        _ => failed(format!("cannot stage the upload in {}: {e}", config.station.data_dir.display())),
    })?;
    io::copy(&mut input, &mut staged)
        .map_err(|e| failed(format!("cannot copy {} into the library: {e}", file.display())))?;
    match library.admit(staged, meta, &mut store, clock.now()) {
        Ok(Inserted::New(clip)) => write_json(out, &clip),
        Ok(Inserted::Existing(clip)) => {
            eprintln!(
                "note: this audio is already in the library as clip {} \"{}\" (same SHA-256); nothing was added",
                clip.id, clip.meta.title
            );
            write_json(out, &clip)
        }
        Err(IngestError::Rejected(rejection)) => Err(failed(format!("{} was not added: {rejection}", file.display()))),
        Err(IngestError::Meta(e)) => Err(failed(format!("--{}: {}", flag_name(e.field), e.message))),
        Err(e) => Err(failed(format!("{} was not added: {e}", file.display()))),
    }
}

fn flag_name(field: &str) -> String {
    match field {
        "language" => "lang".to_owned(),
        other => other.replace('_', "-"),
    }
}

fn no_such_clip(id: i64) -> Failure {
    failed(format!("there is no clip {id}; `loa clip list` shows the ids"))
}

fn write_json(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(value).expect("clips serialise to JSON");
    text.push('\n');
    out.write_all(text.as_bytes()).map_err(write_err)
}

fn validity(clip: &Clip) -> String {
    match (clip.meta.valid_from, clip.meta.valid_until) {
        (None, None) => "always".to_owned(),
        (from, until) => format!(
            "{}..{}",
            from.map(|d| d.to_string()).unwrap_or_default(),
            until.map(|d| d.to_string()).unwrap_or_default()
        ),
    }
}

fn write_clip_table(out: &mut dyn Write, clips: &[Clip]) -> Result<(), Failure> {
    let mut text = format!(
        "{:>4}  {:<7}  {:>7}  {:>6}  {:<8} {:<5} {:<9} {:<22}  title\n",
        "id", "status", "length", "LUFS", "topic", "lang", "priority", "valid"
    );
    for clip in clips {
        let status = if clip.retired_at.is_some() { "retired" } else { "active" };
        let seconds = clip.audio.duration_ms as f64 / 1000.0;
        text.push_str(&format!(
            "{:>4}  {status:<7}  {:>6.1}s  {:>6.1}  {:<8} {:<5} {:<9} {:<22}  {}\n",
            clip.id,
            seconds,
            clip.audio.loudness_lufs,
            clip.meta.topic,
            clip.meta.language,
            clip.meta.priority.as_str(),
            validity(clip),
            clip.meta.title
        ));
    }
    if clips.is_empty() {
        text.push_str("(the library is empty; add a bulletin with `loa clip add FILE --title T --topic cchc`)\n");
    }
    out.write_all(text.as_bytes()).map_err(write_err)
}

fn write_clip_details(out: &mut dyn Write, clip: &Clip) -> Result<(), Failure> {
    let a = &clip.audio;
    let text = format!(
        "id          {}\ntitle       {}\ntopic       {}\nlanguage    {}\npriority    {}\nvalid       {}\nduration    {:.3} s\nformat      {} Hz, {} channel(s)\nloudness    {:.2} LUFS\npeak        {:.2} dBFS (true peak {:.2} dBTP)\nsize        {} bytes\nsha256      {}\ncreated_at  {}\nretired_at  {}\n",
        clip.id,
        clip.meta.title,
        clip.meta.topic,
        clip.meta.language,
        clip.meta.priority,
        validity(clip),
        a.duration_ms as f64 / 1000.0,
        a.sample_rate,
        a.channels,
        a.loudness_lufs,
        a.peak_dbfs,
        a.true_peak_dbfs,
        clip.size_bytes,
        clip.sha256,
        clip.created_at,
        clip.retired_at.as_deref().unwrap_or("-"),
    );
    out.write_all(text.as_bytes()).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }
}
