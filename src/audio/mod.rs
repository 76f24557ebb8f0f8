//! The audio output. `output` is what the engine sees (the [`output::Output`] trait and the
//! measurement it returns); `device` is the only code that touches rodio/cpal (and through
//! them ALSA); `meter` is what the device callback measures, apart from cpal so it is tested
//! on its own.

pub mod device;
mod meter;
pub mod output;
