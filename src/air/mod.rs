//! Airing: the `loa run` loop (`engine`), which slot is due (`scheduler`), what a slot plays
//! (`planner`, `quota`), the amplifier hooks (`amplifier`) and what the engine tells the API
//! (`live`).

pub mod amplifier;
pub mod engine;
pub mod live;
pub mod planner;
pub mod quota;
pub mod scheduler;
