//! End-to-end test harness.

pub mod harness;
pub mod sheets_emulator;
pub mod smtp_server;
