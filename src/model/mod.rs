//! The station's vocabulary, shared by config, store, proof and API without depending on any of
//! them: what a clip is (`clip`), what an
//! operator may queue (`queue`) and what an API token is (`token`).

pub mod clip;
pub mod key;
pub mod level;
pub mod protocol;
pub mod queue;
pub mod token;
