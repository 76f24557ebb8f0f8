//! `loa district …`: the office's verbs. Exit status as everywhere: 0 all clean, 1 a station
//! failed or raised an alarm (or the command failed), 2 bad usage or config.

use std::sync::Arc;

use super::*;
use crate::district::bulletins::{BulletinError, NewBulletin};
use crate::district::config::DistrictConfig;
use crate::district::{Office, OfficeError, pull, report};
use crate::model::clip::{ClipMeta, Priority};
use crate::proof::bulletin::Stations;

#[derive(Debug, Subcommand)]
pub enum DistrictCommand {
    /// Validate district.toml: every error names the key and the line.
    CheckConfig,
    /// Check the office's own memory: its signed log, every table against it, every held event
    /// from its bytes with the keys district.toml pins. Exit 1 naming what is wrong.
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Pull every station with a `url` once (concurrently, with timeouts) and verify what is new
    /// against what the office holds. One line per station.
    Pull {
        /// Only this station.
        #[arg(long, value_name = "ID")]
        station: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// What the office holds of each station, and its open alarms.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// One row per station for a period: 2026-W48, 2026-11, 2026-Q4, 2026-H2 or 2026.
    Report {
        #[arg(long)]
        period: String,
        #[arg(long, default_value = "json", value_parser = parse_report_format)]
        format: ReportFormat,
    },
    /// Acknowledge an alarm with a note; the alarm and the note both stay on record.
    Ack {
        #[arg(value_name = "ALARM_ID")]
        alarm: i64,
        #[arg(long)]
        note: String,
    },
    /// Push tokens for stations that push (no inbound reachability).
    #[command(subcommand)]
    Token(DistrictTokenCommand),
    /// Bulletins the office sends down to its stations, signed with district.key.
    #[command(subcommand)]
    Bulletin(BulletinCommand),
    /// Serve the dashboard and the push receiver on `[district] listen`, pulling on schedule.
    Serve,
    /// After restoring the office from an older copy of its data, once `check` names stations
    /// that saw more of its log than it holds: records in its log that everything up to the
    /// highest seq they saw is lost, so no bulletin id a station has seen is used again; then
    /// bulletins can be sent. Exit 0 (also when there was nothing to recover).
    Recover,
}

#[derive(Debug, Subcommand)]
pub enum BulletinCommand {
    /// Send a bulletin: the file is proven playable (a full decode, as a station's upload), kept
    /// by its SHA-256, and its manifest signed and recorded in the office's log.
    Add {
        file: PathBuf,
        #[arg(long)]
        title: String,
        #[arg(long, value_name = "ID")]
        topic: String,
        #[arg(long, value_name = "ID", default_value = "vi")]
        language: String,
        /// normal (the station chooses when), priority (leads each peak slot), emergency (at once).
        #[arg(long, default_value = "normal", value_parser = parse_priority)]
        priority: Priority,
        /// all, or station ids separated by commas.
        #[arg(long, default_value = "all", value_parser = crate::district::bulletins::parse_stations)]
        stations: Stations,
        /// First station-local date it may air (default today).
        #[arg(long, value_parser = crate::district::bulletins::parse_day)]
        from: Option<chrono::NaiveDate>,
        /// Last station-local date it may air (default six days after --from).
        #[arg(long, value_parser = crate::district::bulletins::parse_day)]
        until: Option<chrono::NaiveDate>,
        /// Completed airings each station owes in the window. emergency: aired at once on
        /// arrival (pre-empting anything), then leading every peak slot until aired this often;
        /// priority: leading every peak slot until aired this often; normal: the station's
        /// choice within the window. Aired this often, a bulletin is planned as a normal one.
        #[arg(long, default_value_t = 1)]
        airings: u32,
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a bulletin: a signed withdrawal; stations stop airing it and say so.
    Withdraw { id: i64 },
    /// The bulletins sent, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Where a bulletin stands at each station it is addressed to (pending, received, refused,
    /// aired, expired, withdrawn), with the seqs of the airings that prove it, from the
    /// stations' logs the office holds. Exit 0.
    Status {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

fn parse_priority(text: &str) -> Result<Priority, String> {
    text.parse()
}

#[derive(Debug, Subcommand)]
pub enum DistrictTokenCommand {
    /// Print a new token (shown once; kept as SHA-256): a station's push token (--station), or a
    /// clerk's, who may acknowledge alarms on the dashboard (--clerk NAME).
    Create {
        #[arg(long, value_name = "ID", required_unless_present = "clerk", conflicts_with = "clerk")]
        station: Option<String>,
        #[arg(long, value_name = "NAME")]
        clerk: Option<String>,
    },
    /// List the office's tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it stops working at once.
    Revoke { id: i64 },
}

impl From<OfficeError> for Failure {
    fn from(e: OfficeError) -> Failure {
        failed(e.to_string())
    }
}

impl From<crate::district::store::DistrictStoreError> for Failure {
    fn from(e: crate::district::store::DistrictStoreError) -> Failure {
        failed(e.to_string())
    }
}

pub(super) fn run(command: DistrictCommand, path: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    let config = DistrictConfig::load(path)?;
    if let DistrictCommand::CheckConfig = command {
        let text = format!(
            "{}: {} ({} stations, {} pulled, pull every {} min, unreachable after {} h)\n",
            path.display(),
            config.name,
            config.stations.len(),
            config.stations.iter().filter(|s| s.url.is_some()).count(),
            config.pull_every.as_secs() / 60,
            config.stale_after.num_hours()
        );
        return out.write_all(text.as_bytes()).map_err(write_err);
    }
    let office = Arc::new(Office::open(config, Arc::new(SystemClock))?);
    if let Some(problems) =
        office.damaged().filter(|_| !matches!(command, DistrictCommand::Check { .. } | DistrictCommand::Serve))
    {
        return Err(failed(format!(
            "the office's memory cannot be trusted, so nothing is reported or changed from it: {}. \
             `loa district check` lists what is wrong; restore district.sqlite from a backup",
            problems.join("; ")
        )));
    }
    match command {
        DistrictCommand::CheckConfig => unreachable!("handled above"),
        DistrictCommand::Check { json } => check(&office, json, out),
        DistrictCommand::Recover => recover(&office, out),
        DistrictCommand::Pull { station, json } => pull_command(&office, station.as_deref(), json, out),
        DistrictCommand::Status { json } => status(&office, json, out),
        DistrictCommand::Report { period, format } => {
            let period = calendar::parse_period(&period, office.config.timezone)
                .map_err(|e| Failure::Usage(format!("--period: {e}")))?;
            let built = report::build(&office, &period, office.clock.now()).map_err(|e| failed(e.to_string()))?;
            out.write_all(&report::render(&built, format).0).map_err(write_err)
        }
        DistrictCommand::Ack { alarm, note } => {
            if note.trim().is_empty() {
                return Err(Failure::Usage("--note: say what was found and done".into()));
            }
            let alarm = office.acknowledge(alarm, note.trim())?;
            write_json(out, &alarm)
        }
        DistrictCommand::Token(DistrictTokenCommand::Create { station, clerk }) => {
            let token = match (station, clerk) {
                (Some(station), _) => {
                    if office.config.station(&station).is_none() {
                        return Err(Failure::Usage(format!(
                            "--station: no [[station]] with id \"{station}\" in the config"
                        )));
                    }
                    office.create_push_token(&station)?
                }
                (None, Some(clerk)) if !clerk.trim().is_empty() => office.create_clerk_token(clerk.trim())?,
                (None, _) => return Err(Failure::Usage("give --station ID or --clerk NAME".into())),
            };
            out.write_all(format!("{token}\n").as_bytes()).map_err(write_err)
        }
        DistrictCommand::Token(DistrictTokenCommand::List { json }) => write_list(out, json, &office.tokens()?, |t| {
            let state = t.revoked_at.as_deref().map_or("active".to_owned(), |at| format!("revoked {at}"));
            format!("{}\t{}\t{}\t{}\t{state}", t.id, t.role, t.owner, t.created_at)
        }),
        DistrictCommand::Token(DistrictTokenCommand::Revoke { id }) => match office.revoke_token(id)? {
            Some(token) => write_json(out, &token),
            None => Err(failed(format!("there is no token {id}; `loa district token list` shows them"))),
        },
        DistrictCommand::Bulletin(command) => bulletin(&office, command, out),
        DistrictCommand::Serve => serve(office),
    }
}

/// `check`: the office's memory (its log, tables, held events), and whether a station has seen
/// more of its log than it holds (restored from an older copy). Exit 1 naming what is wrong.
fn check(office: &Office, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let found = office.check_memory()?;
    let behind = office.behind()?;
    if json {
        let mut value = serde_json::to_value(&found).map_err(|e| failed(e.to_string()))?;
        value["office_behind"] = serde_json::to_value(&behind).map_err(|e| failed(e.to_string()))?;
        write_json(out, &value)?;
    } else {
        let mut text = match found.problems.is_empty() {
            true => format!(
                "the office's memory is whole: {} office events, {} station events verified\n",
                found.office_events, found.station_events
            ),
            false => found.problems.iter().map(|p| format!("DAMAGED: {p}\n")).collect(),
        };
        text.extend(behind.iter().map(|a| format!("BEHIND: {}\n", a.describe())));
        out.write_all(text.as_bytes()).map_err(write_err)?;
    }
    match (found.is_whole(), behind.is_empty()) {
        (false, _) => Err(failed("the office's memory is damaged (see above)")),
        (true, false) => Err(failed("the office is behind its stations (see above): run `loa district recover`")),
        (true, true) => Ok(()),
    }
}

/// `recover`: see [`DistrictCommand::Recover`].
fn recover(office: &Office, out: &mut dyn Write) -> Result<(), Failure> {
    let text = match office.recover()? {
        None => "nothing to recover: no station has seen more of the office's log than it holds\n".to_owned(),
        Some((ahead, head)) => {
            let mut text: String = ahead.iter().map(|a| format!("was: {}\n", a.describe())).collect();
            text += &format!(
                "recovered: the office's log now reaches seq {head}; everything up to it is recorded as lost, \
                 and the next bulletin gets id {}\n",
                head + 1
            );
            text
        }
    };
    out.write_all(text.as_bytes()).map_err(write_err)
}

impl From<BulletinError> for Failure {
    fn from(e: BulletinError) -> Failure {
        match e {
            BulletinError::Usage(message) => Failure::Usage(message),
            other => failed(other.to_string()),
        }
    }
}

fn bulletin(office: &Office, command: BulletinCommand, out: &mut dyn Write) -> Result<(), Failure> {
    match command {
        BulletinCommand::Add { file, title, topic, language, priority, stations, from, until, airings, json } => {
            let meta = ClipMeta { title, topic, language, priority, valid_from: from, valid_until: until };
            let manifest = office.send_bulletin(&NewBulletin { file, meta, stations, airings })?;
            if json {
                return write_json(out, &manifest);
            }
            let text = format!(
                "bulletin {} sent: \"{}\", {}, {} ms, {} to {}, airings {} ({} to {})\n",
                manifest.id,
                manifest.title,
                manifest.priority,
                manifest.duration_ms,
                manifest.sha256,
                serde_json::to_string(&manifest.stations).unwrap_or_default(),
                manifest.airings,
                manifest.valid_from,
                manifest.valid_until
            );
            out.write_all(text.as_bytes()).map_err(write_err)
        }
        BulletinCommand::Withdraw { id } => write_json(out, &office.withdraw_bulletin(id)?),
        BulletinCommand::Status { id, json } => {
            let status = office.bulletin_status(id)?;
            if json {
                return write_json(out, &status);
            }
            let head = format!(
                "bulletin {id} \"{}\": aired at {} of {} stations\n",
                status.title,
                status.aired,
                status.stations.len()
            );
            let lines: String = status
                .stations
                .iter()
                .map(|s| {
                    let why = s.refused_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                    format!(
                        "{}\t{}{why}\t{} completed\t{:?}\n",
                        s.station_id, s.state, s.airings.completed, s.airings.seqs
                    )
                })
                .collect();
            out.write_all((head + &lines).as_bytes()).map_err(write_err)
        }
        BulletinCommand::List { json } => write_list(out, json, &office.bulletins()?, |b| {
            let (m, state) = (&b.manifest, if b.withdrawn { "withdrawn" } else { "sent" });
            format!("{}\t{}\t{}\t{}\t{}\t{state}", b.id, b.sent_at, m["priority"], m["title"], m["stations"])
        }),
    }
}

/// A list as JSON, or one tab-separated line per item.
fn write_list<T: serde::Serialize>(
    out: &mut dyn Write,
    json: bool,
    items: &[T],
    line: impl Fn(&T) -> String,
) -> Result<(), Failure> {
    if json {
        return write_json(out, &items);
    }
    let text: String = items.iter().map(|item| line(item) + "\n").collect();
    out.write_all(text.as_bytes()).map_err(write_err)
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the runtime: {e}")))
}

fn pull_command(office: &Arc<Office>, only: Option<&str>, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    if let Some(id) = only {
        match office.config.station(id) {
            None => return Err(Failure::Usage(format!("--station: no [[station]] with id \"{id}\" in the config"))),
            Some(s) if s.url.is_none() => {
                return Err(Failure::Usage(format!("--station: {id} has no url: it only pushes")));
            }
            Some(_) => {}
        }
    }
    let contacts = runtime()?.block_on(pull::pull_all(Arc::clone(office), only));
    let unreachable = office.check_reachability()?;
    if json {
        write_json(out, &contacts)?;
    } else {
        let mut text = String::new();
        for c in &contacts {
            text.push_str(&match (&c.error, c.alarms.is_empty()) {
                (Some(e), _) => format!("{} FAILED: {e}\n", c.station_id),
                (None, false) => {
                    let kinds: Vec<&str> = c.alarms.iter().map(|k| k.as_str()).collect();
                    format!(
                        "{} ALARM {}: {} new events kept, head {}\n",
                        c.station_id,
                        kinds.join(", "),
                        c.accepted,
                        c.head_seq
                    )
                }
                (None, true) => {
                    format!("{} ok: {} new events, head {} {}\n", c.station_id, c.accepted, c.head_seq, c.head_hash)
                }
            });
        }
        for id in &unreachable {
            text.push_str(&format!("{id} ALARM unreachable\n"));
        }
        out.write_all(text.as_bytes()).map_err(write_err)?;
    }
    if contacts.iter().all(|c| c.clean()) && unreachable.is_empty() {
        Ok(())
    } else {
        Err(failed("not every station verified clean (see above)"))
    }
}

fn status(office: &Office, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let stations = office.status()?;
    if json {
        return write_json(
            out,
            &serde_json::json!({ "office": office.config.name, "office_key": office.public_key_hex(), "stations": stations }),
        );
    }
    let mut text = format!(
        "office {}: key {} (stations pin it as [office] public_key)\n",
        office.config.name,
        office.public_key_hex()
    );
    for s in &stations {
        text.push_str(&format!(
            "{} ({}): head {}, last clean contact {}\n",
            s.id,
            s.name,
            s.head_seq,
            s.last_ok_at.as_deref().unwrap_or("never")
        ));
        for a in &s.alarms {
            text.push_str(&format!("  alarm {} {} at seq {:?}: {}\n", a.id, a.kind, a.seq, a.detail));
        }
    }
    out.write_all(text.as_bytes()).map_err(write_err)
}

fn serve(office: Arc<Office>) -> Result<(), Failure> {
    run::init_logging();
    let listen = office.config.listen;
    let listener = std::net::TcpListener::bind(listen).map_err(|e| {
        failed(format!("cannot listen on {listen} ({e}); change district.listen in {}", office.config.path.display()))
    })?;
    listener.set_nonblocking(true).map_err(|e| failed(format!("cannot set up the listener: {e}")))?;
    let tls = match &office.config.tls {
        Some(source) => {
            Some(crate::http::tls::load(source, &office.config.data_dir).map_err(|e| failed(e.to_string()))?)
        }
        None => None,
    };
    if let Some(tls) = &tls {
        // Where a station's admin reads it for `[upstream] tls_fingerprint`.
        println!("HTTPS certificate fingerprint (SHA-256), for [upstream] tls_fingerprint: {}", tls.fingerprint);
    }
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| failed(e.to_string()))?;
        let address = listener.local_addr().map_err(|e| failed(e.to_string()))?;
        match &tls {
            Some(tls) => {
                tracing::info!(%address, fingerprint = %tls.fingerprint, "district dashboard listening (HTTPS)")
            }
            None => tracing::info!(%address, "district dashboard listening"),
        }
        crate::district::http::serve(office, listener, tls.map(|t| t.acceptor), run::wait_for_stop_signal())
            .await
            .map_err(|e| failed(format!("the dashboard failed: {e}")))
    })
}
