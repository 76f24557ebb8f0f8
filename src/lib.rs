//! `loa`: plans, airs and proves administrative-reform bulletins at a community loudspeaker
//! station. See ARCHITECTURE.md for the map of modules and the invariants they keep.
//!
//! The folders are layers, declared here from the bottom up: a module imports only from its
//! own folder and the layers declared before it (`tests/it/tidy.rs` checks it).

// What the daemon asks of the OS: the data directory's lock, systemd, the `unsafe` calls.
pub mod ops;
// The wall clock, cron slots, calendar periods.
pub mod time;
// The vocabulary: clips, the queue, API tokens.
pub mod model;
// The station's validated settings.
pub mod config;
// The proof log's events, encoding, signatures, verification and export formats.
pub mod proof;
// The only user of SQLite.
pub mod store;
// Clips in: the MP3 walk, the decoder, the measurement, the one ingest gate.
pub mod library;
// Sound out: the device, the meter.
pub mod audio;
// What the log proves: the self-check and the period reports.
pub mod audit;
// The `loa run` loop: slots, programs, quotas, hooks.
pub mod air;
// The API and the operator's page.
pub mod http;
// `loa run` as a library: the engine and the API wired together.
pub mod daemon;
// The command line.
pub mod cli;
