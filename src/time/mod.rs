//! Time as an input: the one reader of the wall clock (`clock`), cron slots in station time
//! (`slots`), and the calendar periods quotas and reports count in (`calendar`).

pub mod calendar;
pub mod clock;
pub mod slots;
