//! The audio output: the only code that touches rodio/cpal, and the meter that turns what the
//! device took into evidence.

pub mod player;
