//! `loa`: plans, airs and proves administrative-reform bulletins at a community loudspeaker
//! station. See ARCHITECTURE.md for the map of modules and the invariants they keep.

pub mod amplifier;
pub mod analysis;
pub mod auth;
pub mod chain;
pub mod cli;
pub mod clip;
pub mod clock;
pub mod compliance;
pub mod config;
pub mod decode;
pub mod engine;
pub mod events;
pub mod export;
pub mod http;
pub mod ingest;
pub mod live;
pub mod lock;
pub mod mp3;
pub mod planner;
pub mod player;
pub mod proof;
pub mod quota;
pub mod scheduler;
pub mod slots;
pub mod store;
pub mod supervisor;
