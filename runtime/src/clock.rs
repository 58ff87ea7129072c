//! The request path's clock: tokio's, as a `std::time::Instant`, so tests that pause
//! tokio time (`#[tokio::test(start_paused = true)]`) also move every deadline check.
//! Outside tests it is the monotonic clock.

use std::time::Instant;

/// The current instant on tokio's clock (real time unless a test paused it).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
