//! What the station proves about itself from its log alone: the check of its own stored chain
//! (`chain`), the period reports an office reads (`compliance`), and the office's receipt
//! for what it holds (`receipt`).

pub mod chain;
pub mod compliance;
pub mod feed;
pub mod follow;
pub mod receipt;
pub mod render;
pub mod upstream;
pub mod words;
