//! `loa`: plans, airs and proves administrative-reform bulletins at a community loudspeaker
//! station. See ARCHITECTURE.md for the map of modules and the invariants they keep.
//!
//! The folders are layers, declared here from the bottom up: a module imports only from its
//! own folder and the layers declared before it (`tests/it/tidy.rs` checks it).

/// An enum whose variants have fixed names in the log, the API and the CLI: declares it with
/// `as_str`, `Display`, `ALL` and a `FromStr` whose error lists the names ("\"x\" is not a
/// priority; use normal, priority or emergency"). One declaration, so a name and its parse
/// cannot drift apart. Serde attributes, where the type has them, must use the same names.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every name, in declaration order (what a schema lists as allowed values).
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("\"{other}\" is not {}; use {}", $what, $crate::one_of(&[$($text),+]))),
                }
            }
        }
    };
}

/// "a, b or c".
#[doc(hidden)]
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

// What the daemon asks of the OS: the data directory's lock, systemd, the `unsafe` calls.
pub mod ops;
// The wall clock, cron slots, calendar periods.
pub mod time;
// The vocabulary: clips, the queue, API tokens.
pub mod model;
// The station's validated settings.
pub mod config;
// The proof log's events, encoding, signatures, verification and export formats.
pub mod proof;
// The only user of SQLite.
pub mod store;
// Clips in: the MP3 walk, the decoder, the measurement, the one ingest gate.
pub mod library;
// Sound out: the device, the meter.
pub mod audio;
// What the log proves: the self-check and the period reports.
pub mod audit;
// The `loa run` loop: slots, programs, quotas, hooks.
pub mod air;
// The API and the operator's page.
pub mod http;
// `loa run` as a library: the engine and the API wired together.
pub mod daemon;
// The auditing office: many stations, verified with memory, alarms, cross-station reports.
pub mod district;
// The command line.
pub mod cli;
