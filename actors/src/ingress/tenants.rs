//! API keys → tenants (`tenants` in the config): who a request is, what it may do, and
//! its own token bucket. With no tenants configured the public port is open (every
//! request is tenant `none`); with any, every route but the probes and `/metrics` needs
//! a key (`X-Api-Key`, or `Authorization: Bearer`): none or an unknown one is 401, a key
//! without the route's scope 403, a tenant over its bucket 429 naming the tenant.

use axum::http::HeaderMap;
use prometheus::{IntCounterVec, Opts};
use recd_runtime::admission::Admission;
use recd_runtime::config::{Scope, TenantConfig};
use recd_runtime::metrics::Metrics;
use recd_runtime::{ErrorCode, RecdError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// The tenant label of requests on a node without tenants.
pub const ANONYMOUS: &str = "none";
/// The tenant label of requests refused before a tenant was known.
pub const UNAUTHENTICATED: &str = "unauthenticated";

struct Tenant {
    name: Arc<str>,
    scopes: Vec<Scope>,
    bucket: Admission,
}

/// Why a request is refused: the error, and for 429 the seconds until a retry.
pub type Refused = (RecdError, Option<u64>);

/// The configured tenants, by the SHA-256 of their keys.
pub struct Tenants {
    by_key: HashMap<[u8; 32], Arc<Tenant>>,
    /// `recd_tenant_requests_total{tenant, code}`.
    pub requests: IntCounterVec,
}

impl Tenants {
    /// The tenants of `config`; registers their request counter with `metrics`.
    pub fn new(config: &[TenantConfig], metrics: &Metrics) -> anyhow::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "recd_tenant_requests_total",
                "Requests on the public port by tenant and HTTP status",
            ),
            &["tenant", "code"],
        )?;
        metrics.register(Box::new(requests.clone()))?;
        let mut by_key = HashMap::new();
        for t in config {
            let tenant = Arc::new(Tenant {
                name: Arc::from(t.name.as_str()),
                scopes: t.scopes.clone(),
                bucket: Admission::new(t.qps, if t.burst == 0 { t.qps } else { t.burst }),
            });
            for hex in &t.key_sha256 {
                by_key.insert(unhex(hex)?, Arc::clone(&tenant));
            }
        }
        Ok(Self { by_key, requests })
    }

    /// Who the request is (its tenant label) and whether it may do `scope` now: the
    /// refusal is 401, 403 or 429. A `None` scope (probes, metrics) needs no key.
    pub fn admit(
        &self,
        headers: &HeaderMap,
        scope: Option<Scope>,
    ) -> (Arc<str>, Result<(), Refused>) {
        let (Some(scope), false) = (scope, self.by_key.is_empty()) else {
            return (Arc::from(ANONYMOUS), Ok(()));
        };
        let refused = |code, message: &str| {
            (
                Arc::from(UNAUTHENTICATED),
                Err((RecdError::new(code, message), None)),
            )
        };
        let Some(key) = presented_key(headers) else {
            return refused(
                ErrorCode::Unauthenticated,
                "an API key is required (X-Api-Key)",
            );
        };
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let Some(tenant) = self.by_key.get(&digest) else {
            return refused(ErrorCode::Unauthenticated, "unknown API key");
        };
        let name = Arc::clone(&tenant.name);
        if !tenant.scopes.contains(&scope) {
            let message = format!("tenant {name} has no {} scope", scope_name(scope));
            return (
                name,
                Err((RecdError::new(ErrorCode::Forbidden, message), None)),
            );
        }
        if let Err(wait) = tenant.bucket.check() {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let message = format!("tenant {name} is over its admitted rate, retry after {secs} s");
            return (
                name,
                Err((RecdError::new(ErrorCode::RateLimited, message), Some(secs))),
            );
        }
        (name, Ok(()))
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "read",
        Scope::Write => "write",
    }
}

/// The key of `X-Api-Key`, else of `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key") {
        return k.to_str().ok().filter(|k| !k.is_empty());
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    auth.strip_prefix("Bearer ").filter(|k| !k.is_empty())
}

fn unhex(hex: &str) -> anyhow::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    anyhow::ensure!(hex.len() == 64, "a SHA-256 is 64 hex digits");
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(key: &str) -> String {
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn headers(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", key.parse().unwrap());
        h
    }

    #[test]
    fn keys_scopes_and_buckets() {
        let config = vec![
            TenantConfig {
                name: "shop".into(),
                key_sha256: vec![sha("k-shop")],
                scopes: vec![Scope::Read, Scope::Write],
                qps: 1,
                burst: 2,
            },
            TenantConfig {
                name: "viewer".into(),
                key_sha256: vec![sha("k-view")],
                scopes: vec![Scope::Read],
                qps: 0,
                burst: 0,
            },
        ];
        let t = Tenants::new(&config, &Metrics::new()).unwrap();
        let status = |(_, r): (Arc<str>, Result<(), Refused>)| {
            r.map_or_else(|(e, _)| e.code.http_status(), |_| 200)
        };
        assert_eq!(status(t.admit(&HeaderMap::new(), Some(Scope::Read))), 401);
        assert_eq!(status(t.admit(&headers("nope"), Some(Scope::Read))), 401);
        assert_eq!(
            status(t.admit(&HeaderMap::new(), None)),
            200,
            "probes need no key"
        );
        assert_eq!(status(t.admit(&headers("k-view"), Some(Scope::Write))), 403);
        let mut bearer = HeaderMap::new();
        bearer.insert("authorization", "Bearer k-view".parse().unwrap());
        let (who, ok) = t.admit(&bearer, Some(Scope::Read));
        assert_eq!((&*who, ok.is_ok()), ("viewer", true));
        // shop: a burst of 2, then 429 naming shop; viewer (no limit) is not affected
        assert_eq!(status(t.admit(&headers("k-shop"), Some(Scope::Write))), 200);
        assert_eq!(status(t.admit(&headers("k-shop"), Some(Scope::Read))), 200);
        let (who, refused) = t.admit(&headers("k-shop"), Some(Scope::Read));
        assert_eq!(&*who, "shop");
        let (refused, retry_after) = refused.unwrap_err();
        assert_eq!(refused.code.http_status(), 429);
        assert!(refused.message.contains("shop"), "{}", refused.message);
        assert!(retry_after.is_some());
        assert!((0..100).all(|_| t.admit(&headers("k-view"), Some(Scope::Read)).1.is_ok()));
    }

    #[test]
    fn without_tenants_everything_is_anonymous() {
        let t = Tenants::new(&[], &Metrics::new()).unwrap();
        let (who, ok) = t.admit(&HeaderMap::new(), Some(Scope::Write));
        assert_eq!((&*who, ok.is_ok()), (ANONYMOUS, true));
    }
}
