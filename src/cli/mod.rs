//! The command line: raw flags (clap) here, validated settings in `config`.
//!
//! The verbs and flags are a contract other tools script against; add to them, never rename.
//! Exit status: 0 success, 1 the command failed (e.g. a rejected clip), 2 bad usage or config.

mod clips;
mod district;
mod proof_log;
mod run;
mod station;
mod tokens;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};

use crate::air::scheduler;
use crate::audio::process::DeviceProcess;
use crate::audit::chain;
use crate::audit::compliance;
use crate::audit::render::{self, ReportFormat};
use crate::config::{self, Config, ConfigError};
use crate::daemon;
use crate::http::{self};
use crate::library::ingest::{IngestError, Library};
use crate::model::clip::{self, Clip, ClipMeta, Priority};
use crate::model::token::{self, Role};
use crate::ops::lock::{DataDirLock, LockError};
use crate::proof::events;
use crate::proof::export::Head;
use crate::proof::export::{self, Format};
use crate::proof::{self, Expect, StationKey};
use crate::store::{EventQuery, Inserted, KeyChoice, Store};
use crate::time::calendar::{self, QuotaPeriod};
use crate::time::clock::{Clock, SystemClock};

#[derive(Debug, Parser)]
#[command(name = "loa", version, about = "Plans, airs and proves bulletins at a community loudspeaker station")]
pub struct Args {
    /// Config file (TOML): the station's (default config/station.toml), or for `district` the
    /// office's (default district.toml).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
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
        /// json or csv for tools; csv-vi (Vietnamese, for Excel) or html (printable) for people.
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
    /// The auditing office: pull and verify many stations with memory, alarms, reports, and a
    /// dashboard. Reads its own config (--config, default district.toml), not a station's.
    #[command(subcommand)]
    District(district::DistrictCommand),
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
    if !proof::is_hex64(hash) {
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
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
    #[error(transparent)]
    Tls(#[from] http::tls::TlsError),
    #[error(transparent)]
    Key(#[from] proof::KeyError),
    /// Standard output could not be written (kept whole: a closed pipe is not a failure).
    #[error("cannot write output: {0}")]
    Output(io::Error),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Config(_) | Failure::Usage(_) => ExitCode::from(2),
            Failure::Store(e) | Failure::Daemon(daemon::DaemonError::Store(e)) if e.is_config() => ExitCode::from(2),
            Failure::Failed(_)
            | Failure::Store(_)
            | Failure::Daemon(_)
            | Failure::Tls(_)
            | Failure::Key(_)
            | Failure::Output(_) => ExitCode::from(1),
        }
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure::Failed(message.into())
}

pub fn main() -> ExitCode {
    // Whatever loa writes (databases, backups, receipts, keys) is not for other users.
    crate::ops::sys::private_files();
    // The device's own process, as `loa run` starts it (`loa audio-worker`, nothing else): it
    // skips building the whole command line's definitions, which it would only keep resident.
    let result = if std::env::args_os().skip(1).eq(["audio-worker"]) {
        run::audio_worker()
    } else {
        run(Args::parse(), &SystemClock, &mut io::stdout().lock())
    };
    match result {
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
        return proof_log::verify(file, public_key, expect, out);
    }
    if let Command::District(command) = args.command {
        let path = args.config.unwrap_or_else(|| PathBuf::from(crate::district::config::DEFAULT_PATH));
        return district::run(command, &path, out);
    }
    let config = Config::load(args.config.as_deref().unwrap_or(Path::new(config::DEFAULT_PATH)))?;
    match args.command {
        Command::Run => run::run_station(config),
        Command::CheckConfig => station::check_config(&config, clock, out),
        Command::Station { json } => station::station(&config, json, out),
        Command::Airtime { after_seq, from, to, format, damaged_ok } => {
            proof_log::airtime(&config, after_seq, (from, to), format, damaged_ok, clock, out)
        }
        Command::Key(command) => proof_log::run_key(command, &config, clock, out),
        Command::Clip(command) => clips::run_clip(command, &config, clock, out),
        Command::Token(command) => tokens::run_token(command, &config, clock, out),
        Command::Backup { path } => proof_log::backup(&config, &path, clock, out),
        Command::Compliance { period, format } => proof_log::compliance(&config, &period, format, clock, out),
        Command::Verify { .. } | Command::District(_) => unreachable!("handled above"),
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

fn open_station(config: &Config) -> Result<(Store, Library), Failure> {
    Ok(daemon::open_data(config)?)
}

fn write_json(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(value).expect("clips serialise to JSON");
    text.push('\n');
    out.write_all(text.as_bytes()).map_err(write_err)
}

fn lock_data_dir(config: &Config, what: &str) -> Result<DataDirLock, Failure> {
    let data_dir = daemon::create_data_dir(config)?;
    DataDirLock::acquire(data_dir, what).map_err(|e| match e {
        LockError::Held { .. } => Failure::Usage(e.to_string()),
        LockError::Io { .. } => failed(e.to_string()),
    })
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
