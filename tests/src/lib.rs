//! End-to-end test harness.

pub mod citus_cluster;
pub mod fixture_api;
pub mod harness;
pub mod sheets_emulator;
pub mod smtp_server;
pub mod test_ca;
pub mod tls_cluster;
