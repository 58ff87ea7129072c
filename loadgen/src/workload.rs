//! Seeded per-request choices: which user, which lane, when, and whether to cancel.

use crate::cli::{parse_pairs, Args, Arrivals};
use recd_runtime::api::RecommendRequest;
use std::time::Duration;

/// Valid workload ids are u0 .. u9999999 (docs/workload.md).
pub const USERS: u64 = 10_000_000;

/// The generator's random stream (splitmix64, seedable).
pub type Rng = recd_runtime::hash::SplitMix64;

/// How user ids are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum UserDist {
    /// Uniform over all ids.
    Uniform,
    /// Power law with exponent `s` over ranks 1..=USERS (continuous inverse-CDF
    /// approximation of zipf(s)); rank r is user u{r-1}.
    Zipf(f64),
    /// `n` hot ids (u0..) take `fraction` of requests; the rest uniform.
    Hot(u64, f64),
}

impl UserDist {
    /// Parses `uniform`, `zipf:S`, `hot:N:FRACTION`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["uniform"] => Ok(Self::Uniform),
            ["zipf", e] => match e.parse::<f64>() {
                Ok(e) if e > 0.0 && e.is_finite() => Ok(Self::Zipf(e)),
                _ => Err(format!("zipf exponent must be > 0 in {s:?}")),
            },
            ["hot", n, f] => match (n.parse::<u64>(), f.parse::<f64>()) {
                (Ok(n), Ok(f)) if (1..=USERS).contains(&n) && (0.0..=1.0).contains(&f) => {
                    Ok(Self::Hot(n, f))
                }
                _ => Err(format!(
                    "expected hot:N:FRACTION with N in 1..=1e7, FRACTION in 0..=1, got {s:?}"
                )),
            },
            _ => Err(format!(
                "unknown user distribution {s:?} (uniform, zipf:S, hot:N:FRACTION)"
            )),
        }
    }

    /// Draws a user index.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let n = USERS as f64;
        match *self {
            Self::Uniform => rng.next_u64() % USERS,
            Self::Hot(hot, fraction) => {
                if rng.next_f64() < fraction {
                    rng.next_u64() % hot
                } else {
                    rng.next_u64() % USERS
                }
            }
            Self::Zipf(s) => {
                let u = rng.next_f64();
                let rank = if (s - 1.0).abs() < 1e-9 {
                    n.powf(u)
                } else {
                    let a = 1.0 - s;
                    ((n.powf(a) - 1.0) * u + 1.0).powf(1.0 / a)
                };
                (rank.floor() as u64).clamp(1, USERS) - 1
            }
        }
    }
}

/// One request's choices.
#[derive(Debug, Clone)]
pub struct Pick {
    /// Lane index into `Workload::lanes`.
    pub lane: usize,
    /// The JSON body.
    pub body: String,
    /// Drop the connection after this long, if chosen for cancellation.
    pub cancel_after: Option<Duration>,
}

/// A lane of the mix.
#[derive(Debug, Clone)]
pub struct Lane {
    /// Name sent as X-Priority.
    pub name: String,
    /// Weight in the mix.
    pub weight: f64,
    /// Budget sent as X-Deadline-Ms, if any.
    pub budget_ms: Option<u64>,
}

/// Everything drawn per request.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The lanes of the mix.
    pub lanes: Vec<Lane>,
    users: UserDist,
    topk: u32,
    cancel_fraction: f64,
    arrivals: Arrivals,
    burst_period: f64,
    burst_duty: f64,
    rng: Rng,
}

impl Workload {
    /// From the command line.
    pub fn from_args(args: &Args) -> Result<Self, String> {
        let budgets = parse_pairs(&args.deadlines)?;
        let lanes: Vec<Lane> = parse_pairs(&args.lanes)?
            .into_iter()
            .map(|(name, weight)| Lane {
                budget_ms: budgets
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, ms)| *ms as u64),
                name,
                weight,
            })
            .collect();
        if lanes.is_empty() || lanes.iter().map(|l| l.weight).sum::<f64>() <= 0.0 {
            return Err("--lanes needs at least one lane with a positive weight".into());
        }
        if !(0.0..=1.0).contains(&args.cancel_fraction) {
            return Err("--cancel-fraction must be in 0..=1".into());
        }
        if !(args.burst_duty > 0.0 && args.burst_duty <= 1.0) {
            return Err("--burst-duty must be in (0, 1]".into());
        }
        Ok(Self {
            lanes,
            users: UserDist::parse(&args.users)?,
            topk: args.topk,
            cancel_fraction: args.cancel_fraction,
            arrivals: args.arrivals,
            burst_period: args.burst_period.as_secs_f64(),
            burst_duty: args.burst_duty,
            rng: Rng::new(args.seed),
        })
    }

    /// Restarts the random stream (each closed-loop client draws its own sequence).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    /// Draws the next request.
    pub fn pick(&mut self) -> Pick {
        let total: f64 = self.lanes.iter().map(|l| l.weight).sum();
        let mut x = self.rng.next_f64() * total;
        let mut lane = self.lanes.len() - 1;
        for (i, l) in self.lanes.iter().enumerate() {
            if x < l.weight {
                lane = i;
                break;
            }
            x -= l.weight;
        }
        let user = self.users.sample(&mut self.rng);
        let cancel_after = (self.rng.next_f64() < self.cancel_fraction).then(|| {
            // drop somewhere inside the budget (or the first 50 ms without one)
            let budget = self.lanes[lane].budget_ms.unwrap_or(50).max(1) as f64;
            Duration::from_secs_f64(budget * self.rng.next_f64() / 1e3)
        });
        let request = RecommendRequest {
            user_id: format!("u{user}"),
            topk: self.topk,
            context: None,
        };
        let body = serde_json::to_string(&request).expect("a request always serialises");
        Pick {
            lane,
            body,
            cancel_after,
        }
    }

    /// Schedule offset (seconds from the start) of the request after one at `offset`,
    /// for a mean of `rate` per second.
    pub fn next_offset(&mut self, offset: f64, rate: f64) -> f64 {
        let mean = 1.0 / rate;
        match self.arrivals {
            Arrivals::Constant => offset + mean,
            Arrivals::Poisson => offset - mean * (1.0 - self.rng.next_f64()).ln(),
            Arrivals::Onoff => {
                let (period, duty) = (self.burst_period, self.burst_duty);
                let next = offset + mean * duty;
                let cycle = (next / period).floor();
                if next - cycle * period < duty * period {
                    next
                } else {
                    (cycle + 1.0) * period
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_stay_in_range_and_skew() {
        let mut rng = Rng::new(3);
        let zipf = UserDist::parse("zipf:1.1").unwrap();
        let draws: Vec<u64> = (0..20_000).map(|_| zipf.sample(&mut rng)).collect();
        assert!(draws.iter().all(|&u| u < USERS));
        let top100 = draws.iter().filter(|&&u| u < 100).count();
        assert!(
            top100 > 2_000,
            "zipf is skewed: {top100} of 20000 in the top 100"
        );
        let hot = UserDist::parse("hot:1000:0.9").unwrap();
        let in_hot = (0..10_000).filter(|_| hot.sample(&mut rng) < 1000).count();
        assert!((8_800..9_200).contains(&in_hot), "{in_hot}");
        assert!(UserDist::parse("zipf:0").is_err() && UserDist::parse("hot:0:0.5").is_err());
    }

    #[test]
    fn onoff_keeps_the_mean_rate_inside_on_windows() {
        let args = <crate::cli::Args as clap::Parser>::parse_from([
            "x",
            "--url",
            "http://127.0.0.1:1",
            "--arrivals",
            "onoff",
            "--burst-period",
            "100ms",
            "--burst-duty",
            "0.25",
        ]);
        let mut w = Workload::from_args(&args).unwrap();
        let (mut t, mut n) = (0.0f64, 0);
        while t < 1.0 {
            let phase = t - (t / 0.1 + 1e-9).floor() * 0.1;
            assert!(
                phase < 0.025 + 1e-9,
                "request at {t} s is outside an on window"
            );
            t = w.next_offset(t, 1000.0);
            n += 1;
        }
        assert!(
            (990..=1010).contains(&n),
            "{n} requests in 1 s at a mean of 1000/s"
        );
    }
}
