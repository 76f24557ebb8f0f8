//! The audio output. `output` is what the engine sees (the [`output::Output`] trait and the
//! measurement it returns); `process` is the station's side of the device's own process and
//! `worker` that process (`loa audio-worker`), so no fault of the device or alsa-lib takes the
//! station down; `device` is the only code that touches rodio/cpal (and through them ALSA),
//! and runs only in that process; `meter` is what the device callback measures, apart from
//! cpal so it is tested on its own.

pub mod device;
mod meter;
pub mod output;
pub mod process;
pub mod worker;
