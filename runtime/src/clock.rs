//! The request path's clock: tokio's, as a `std::time::Instant`, so tests that pause
//! tokio time (`#[tokio::test(start_paused = true)]`) also move every deadline check.
//! Outside tests it is the monotonic clock. [`unix_time`] is the wall clock, for
//! timestamps that leave the process.

use std::time::Instant;

/// The current instant on tokio's clock (real time unless a test paused it).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Wall-clock time since the Unix epoch (what stored and published timestamps use; zero
/// if the clock is set before 1970).
pub fn unix_time() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
