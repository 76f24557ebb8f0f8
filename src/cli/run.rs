//! `loa run`: what a process adds to the daemon (`crate::daemon`): logging to journald or
//! stderr, the data directory's lock, the configured listeners, and SIGTERM/SIGINT.

use super::*;

pub(super) fn run_station(config: Config) -> Result<(), Failure> {
    init_logging();
    if config.http.plain_lan {
        tracing::warn!(
            listen = %config.http.listen,
            "plain HTTP on a LAN address (http.allow_plain_lan): tokens cross the LAN in clear; turn TLS on"
        );
    }
    // One daemon per log, held until the process ends.
    let _lock = lock_data_dir(&config, "loa run")?;
    let station = daemon::Station::open(&config)?;
    let listeners = bind(&config)?;
    let shutdown = async {
        wait_for_stop_signal().await;
    };
    let output = Arc::new(DeviceProcess::new(audio_worker_command()?));
    let running = daemon::launch(station, listeners, shutdown, Arc::new(SystemClock), output)?;
    Ok(running.wait()?)
}

/// Logs to journald under systemd (JOURNAL_STREAM names our stderr's journal socket), with
/// priorities and fields; anywhere else, plain lines on stderr. LOA_LOG overrides the filter,
/// e.g. LOA_LOG=debug. The decoders' own notes ("estimating duration") are noise at a station.
/// The device runs in a process of its own: this very binary, as `loa audio-worker`. Where the
/// kernel cannot run this binary by itself (an arm64 build under qemu-user on an amd64 CI
/// machine), `LOA_AUDIO_WORKER` names the command that runs it ("qemu-aarch64-static
/// /path/to/loa"), words split at spaces.
fn audio_worker_command() -> Result<Vec<std::ffi::OsString>, Failure> {
    if let Some(command) = std::env::var("LOA_AUDIO_WORKER").ok().filter(|c| !c.trim().is_empty()) {
        return Ok(command.split_whitespace().map(Into::into).collect());
    }
    let program = std::env::current_exe().map_err(|e| Failure::Usage(format!("cannot find loa's own binary: {e}")))?;
    Ok(vec![program.into()])
}

/// `loa audio-worker`: the device's own process, which `loa run` starts per slot.
pub(super) fn audio_worker() -> Result<(), Failure> {
    init_logging();
    crate::audio::worker::serve().map_err(Failure::Usage)
}

pub(super) fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    const DEFAULT_LOG: &str = "info,symphonia_core=error,symphonia_bundle_mp3=error,rodio=warn";
    let filter: tracing_subscriber::filter::Targets = std::env::var("LOA_LOG")
        .ok()
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| DEFAULT_LOG.parse().expect("default log directives parse"));
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
}

/// The configured addresses: `http.listen`, and `http.tls_listen` with the certificate when TLS is on.
pub(super) fn bind(config: &Config) -> Result<daemon::Listeners, Failure> {
    let listen = |address, key: &str| {
        std::net::TcpListener::bind(address)
            .map_err(|e| failed(format!("cannot listen on {address} ({e}); change {key} in {}", config.path.display())))
    };
    let tls = match &config.http.tls {
        None => None,
        Some(source) => {
            let tls = http::tls::load(source, &config.station.data_dir)?;
            Some((listen(config.http.tls_listen, "http.tls_listen")?, tls))
        }
    };
    Ok(daemon::Listeners { http: listen(config.http.listen, "http.listen")?, tls })
}

pub(super) async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
    }
}
