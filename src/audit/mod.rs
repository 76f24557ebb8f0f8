//! What the station proves about itself from its log alone: the check of its own stored chain
//! (`chain`) and the period reports an office reads (`compliance`).

pub mod chain;
pub mod compliance;
