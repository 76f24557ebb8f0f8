//! `loa`: plans, airs and proves administrative-reform bulletins at a community loudspeaker
//! station. See ARCHITECTURE.md for the map of modules and the invariants they keep.
//!
//! The folders are layers, listed here from the bottom: a module imports only from its own
//! folder and the folders above it in this list (`tests/it/tidy.rs` checks it).

pub mod air;
pub mod audio;
pub mod audit;
pub mod cli;
pub mod config;
pub mod http;
pub mod library;
pub mod model;
pub mod ops;
pub mod proof;
pub mod store;
pub mod time;
