//! The clip library: the one gate every MP3 passes (`ingest`), the container walk (`mp3`), the
//! decoder shared with the player (`decode`) and the measurement that proves a clip playable
//! (`analysis`).

pub mod analysis;
pub mod decode;
pub mod ingest;
pub mod mp3;
