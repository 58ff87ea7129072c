//! W3C trace context (`traceparent: 00-<trace id>-<parent id>-<flags>`): parsed from a
//! request, generated when absent or malformed, returned on the response with this
//! node's span id, and carried in every remote call (the envelope's `trace`,
//! [`crate::protocol`]). A micro-batch's remote calls carry the trace of its most urgent
//! request; each request's access log line names that batch trace too.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// One request's trace context as this node continues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id (never 0).
    pub trace_id: u128,
    /// This node's span id for the request (never 0).
    pub span_id: u64,
    /// Whether the caller asked for the trace to be sampled (flag 01).
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the caller's `traceparent` if it is valid, else starts a new trace.
    pub fn from_header(header: Option<&str>) -> Self {
        match header.and_then(parse) {
            Some((trace_id, sampled)) => Self {
                trace_id,
                span_id: random_u64(),
                sampled,
            },
            None => Self::fresh(),
        }
    }

    /// A new trace.
    pub fn fresh() -> Self {
        let trace_id = (u128::from(random_u64()) << 64) | u128::from(random_u64());
        Self {
            trace_id: trace_id.max(1),
            span_id: random_u64(),
            sampled: false,
        }
    }

    /// The `traceparent` to send on: this trace, this node's span.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// The trace id as 32 lower-case hex digits (logs).
    pub fn trace_hex(&self) -> String {
        hex(self.trace_id)
    }
}

/// A trace id as 32 lower-case hex digits.
pub fn hex(trace_id: u128) -> String {
    format!("{trace_id:032x}")
}

/// `(trace id, sampled)` of a valid version-00 `traceparent`; `None` otherwise (the
/// spec's rule: an invalid header starts a new trace).
fn parse(header: &str) -> Option<(u128, bool)> {
    let parts: Vec<&str> = header.trim().split('-').collect();
    let [version, trace, parent, flags] = parts.as_slice() else {
        return None;
    };
    let lower_hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if *version != "00" || !lower_hex(trace, 32) || !lower_hex(parent, 16) || !lower_hex(flags, 2) {
        return None;
    }
    let trace_id = u128::from_str_radix(trace, 16).ok()?;
    let parent_id = u64::from_str_radix(parent, 16).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace_id != 0 && parent_id != 0).then_some((trace_id, flags & 1 == 1))
}

/// A random non-zero u64 (SipHash keyed by the process's random state over a counter:
/// unique and unpredictable enough for trace and span ids, not for secrets).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static STATE: RandomState = RandomState::new();
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    STATE.with(|s| s.hash_one(n)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let h = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let t = TraceContext::from_header(Some(h));
        assert_eq!(t.trace_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert!(t.sampled);
        let out = t.traceparent();
        assert!(
            out.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{out}"
        );
        assert!(!out.contains("b7ad6b7169203331"), "a new span id: {out}");
        assert_eq!(parse(&out), Some((t.trace_id, true)));
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        let bad = [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
            "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ];
        for h in bad {
            assert_eq!(parse(h), None, "{h}");
            let t = TraceContext::from_header(Some(h));
            assert_ne!(t.trace_id, 0);
        }
        let (a, b) = (TraceContext::fresh(), TraceContext::fresh());
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
    }
}
