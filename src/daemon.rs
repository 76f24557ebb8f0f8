//! `loa run` as a library: open a station's data, then launch the engine and the API on
//! listeners the caller bound. The CLI adds only what a process needs (logging, signals, the
//! data-directory lock, binding the configured addresses); tests and benches launch the same
//! daemon in-process on port 0, with a virtual clock or a simulated output where they need one.
//!
//! Airing never shares fate with the API: the engine runs on its own thread, runtime and store
//! connection; the API on another thread with a multi-threaded runtime and a second connection.
//! Whatever ends the engine (the caller's shutdown, a store failure) ends the API too.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::air::engine::{Engine, EngineError};
use crate::air::live::Live;
use crate::audio::output::Output;
use crate::config::Config;
use crate::http::{self, AppState, tls::Tls};
use crate::library::ingest::Library;
use crate::store::{self, Store, StoreError, StoreHandle};
use crate::time::clock::Clock;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create data_dir {}: {source}; check station.data_dir in {}", dir.display(), config.display())]
    DataDir { dir: PathBuf, config: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot prepare the clip library in {}: {source}", dir.display())]
    Library { dir: PathBuf, source: io::Error },
    #[error("cannot start the {what}: {source}")]
    Start { what: &'static str, source: io::Error },
    #[error("the station stopped: {0}")]
    Engine(#[from] EngineError),
    #[error("the HTTP API failed: {0}")]
    Api(io::Error),
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
}

/// A station's data, checked and open: what `launch` runs on.
pub struct Station {
    config: Arc<Config>,
    engine_store: Store,
    api_store: Store,
    library: Library,
}

impl Station {
    /// Checks the database before anything writes (a damaged one is never papered over), then
    /// opens it twice (engine and API) and the clip library. The caller holds the data
    /// directory's lock (`ops::lock`) if it is a daemon.
    pub fn open(config: &Config) -> Result<Station, DaemonError> {
        store::check_integrity(&config.station.data_dir)?;
        let (engine_store, library) = open_data(config)?;
        let api_store = Store::open(&config.station.data_dir, &config.station.id)?;
        Ok(Station { config: Arc::new(config.clone()), engine_store, api_store, library })
    }
}

/// The data directory (made if missing), its store and its clip library: what every command
/// that touches a station opens.
pub fn open_data(config: &Config) -> Result<(Store, Library), DaemonError> {
    let dir = create_data_dir(config)?;
    let store = Store::open(dir, &config.station.id)?;
    let library =
        Library::open(dir, config.clips).map_err(|source| DaemonError::Library { dir: dir.to_owned(), source })?;
    Ok((store, library))
}

/// The data directory, made if missing.
pub fn create_data_dir(config: &Config) -> Result<&PathBuf, DaemonError> {
    let dir = &config.station.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| DaemonError::DataDir {
        dir: dir.clone(),
        config: config.path.clone(),
        source,
    })?;
    Ok(dir)
}

/// Where the API listens: plain HTTP, and HTTPS when the station has a certificate.
pub struct Listeners {
    pub http: TcpListener,
    pub tls: Option<(TcpListener, Tls)>,
}

impl Listeners {
    /// Plain HTTP on `127.0.0.1:0`: what a test or bench launches on.
    pub fn loopback() -> io::Result<Listeners> {
        Ok(Listeners { http: TcpListener::bind("127.0.0.1:0")?, tls: None })
    }
}

/// A running daemon: its addresses, what the engine tells the API, and the two threads.
pub struct Daemon {
    pub http_address: SocketAddr,
    pub https_address: Option<SocketAddr>,
    pub live: Live,
    engine: JoinHandle<Result<(), DaemonError>>,
    api: JoinHandle<io::Result<()>>,
}

/// Starts the engine and the API; both stop when `shutdown` resolves or the engine ends.
pub fn launch(
    station: Station,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
    output: Arc<dyn Output>,
) -> Result<Daemon, DaemonError> {
    let start = |what| move |source| DaemonError::Start { what, source };
    let Station { config, engine_store, api_store, library } = station;
    let http_address = listeners.http.local_addr().map_err(start("HTTP listener"))?;
    let https_address = match &listeners.tls {
        Some((listener, _)) => Some(listener.local_addr().map_err(start("HTTPS listener"))?),
        None => None,
    };
    let (stop, stopped) = watch::channel(false);
    let live = Live::default();
    let state = AppState::new(Arc::clone(&config), api_store, library.clone(), Arc::clone(&clock), live.clone());
    let api_stopped = stopped.clone();
    let api = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || serve_api(listeners, state, api_stopped))
        .map_err(start("HTTP thread"))?;
    let engine = Engine::new(config, StoreHandle::spawn(engine_store), output, clock, library, live.clone(), stopped);
    let engine = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(source) => {
                    let _ = stop.send(true);
                    return Err(DaemonError::Start { what: "engine runtime", source });
                }
            };
            let result = runtime.block_on(async {
                let on_shutdown = stop.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    let _ = on_shutdown.send(true);
                });
                engine.run().await
            });
            let _ = stop.send(true); // whatever ended the engine ends the API too
            result.map_err(DaemonError::from)
        })
        .map_err(start("engine thread"))?;
    Ok(Daemon { http_address, https_address, live, engine, api })
}

/// The API, and when `[upstream]` is set the push to the office and the following of its
/// bulletins: all on the API's runtime.
fn serve_api(listeners: Listeners, state: AppState, mut stopped: watch::Receiver<bool>) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("http-worker")
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let Listeners { http, tls } = listeners;
        http.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(http)?;
        let address = listener.local_addr()?;
        tracing::info!(%address, page = %crate::config::page_url("http", address), "HTTP API listening");
        let tls = match tls {
            Some((listener, tls)) => {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let address = listener.local_addr()?;
                let page = crate::config::page_url("https", address);
                tracing::info!(%address, %page, fingerprint = %tls.fingerprint, "HTTPS API listening");
                Some((listener, tls))
            }
            None => None,
        };
        if let Some(upstream) = state.config.upstream.clone() {
            let (data_dir, store, bell) =
                (state.config.station.data_dir.clone(), state.store.clone(), state.live.logged_bell());
            let clock = state.clock.clone();
            tokio::spawn(crate::audit::upstream::run(upstream.clone(), data_dir, store, bell, stopped.clone(), clock));
            // The same office sends bulletins down: one follow loop, whoever can reach whom.
            let follower = crate::audit::follow::Follower {
                upstream,
                station_id: state.config.station.id.clone(),
                timezone: state.config.station.timezone,
                data_dir: state.config.station.data_dir.clone(),
                store: state.store.clone(),
                library: state.library.clone(),
                queued: state.live.queue_bell(),
                logged: state.live.logged_bell(),
                clock: state.clock.clone(),
            };
            tokio::spawn(crate::audit::follow::run(follower, stopped.clone()));
        }
        http::serve(listener, tls, state, async move { drop(stopped.wait_for(|stop| *stop).await) }).await
    })
}

impl Daemon {
    /// Waits for both threads; the engine's failure first, then the API's.
    pub fn wait(self) -> Result<(), DaemonError> {
        let engine = self.engine.join().unwrap_or(Err(DaemonError::Panicked("engine")));
        let api = match self.api.join() {
            Ok(result) => result.map_err(DaemonError::Api),
            Err(_) => Err(DaemonError::Panicked("HTTP API")),
        };
        engine.and(api)
    }

    /// Whether the engine has stopped (and so the API is stopping).
    pub fn is_finished(&self) -> bool {
        self.engine.is_finished()
    }
}
