//! Tests with several real sessions (connections in threads) against the `cargo pgrx
//! test` server.

mod multisession;
mod timeouts;
