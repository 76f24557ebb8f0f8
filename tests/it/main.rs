//! One integration-test binary (fast to link), one module per area, shared helpers.

mod clips;
mod config;
mod corpus;
mod daemon;
mod district;
mod engine;
mod faults;
mod helpers;
mod http;
mod office;
mod package;
mod proof;
mod quota;
mod readme;
mod security;
mod systemd;
mod tidy;
mod upgrade;
mod web;
mod wire;
mod year;
