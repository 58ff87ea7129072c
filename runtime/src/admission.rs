//! Token-bucket admission control in front of the gateway.

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// A global token bucket; `None` rate means admit everything.
pub struct Admission {
    limiter: Option<
        RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>,
    >,
    clock: DefaultClock,
}

impl Admission {
    /// A bucket refilling at `rps` tokens/s holding up to `burst`; `rps == 0` disables it.
    pub fn new(rps: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(rps).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn check(&self) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l.check().map_err(|nu| nu.wait_time_from(self.clock.now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_with_wait() {
        let a = Admission::new(1, 3);
        for _ in 0..3 {
            assert!(a.check().is_ok());
        }
        let wait = a.check().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }

    #[test]
    fn zero_rate_admits_all() {
        let a = Admission::new(0, 0);
        assert!((0..10_000).all(|_| a.check().is_ok()));
    }
}
