//! Who may use a node: the `admin` section (the operator listener, its bearer token, fault
//! injection) and `tenants` (API keys by their SHA-256, each key's scopes and token
//! bucket). The ingress enforces both (`recd_actors::ingress::access`).

use super::cluster::is_placeholder;
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// The admin listener: `/admin/*`, `/cluster`, user reads. Off unless a token is set.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin listener binds (keep it on loopback or a private interface).
    pub listen: String,
    /// Bearer token every admin request presents (`RECD__ADMIN__TOKEN`; never logged).
    /// Empty: the admin listener is not started.
    #[serde(skip_serializing)]
    pub token: String,
    /// Enables `POST /admin/fault` (panics a shard or ranker actor) for chaos drills.
    pub fault_injection: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9901".into(),
            token: String::new(),
            fault_injection: false,
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    /// The token is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("fault_injection", &self.fault_injection)
            .finish()
    }
}

/// Shortest admin token accepted.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

impl AdminConfig {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| anyhow::anyhow!("admin.listen: {e}"))?;
        if !self.token.is_empty()
            && (self.token.len() < MIN_TOKEN_LEN || is_placeholder(&self.token))
        {
            bail!("admin.token must be at least {MIN_TOKEN_LEN} characters and not a placeholder");
        }
        Ok(())
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `/recommend`.
    Read,
    /// `/v1/events`, `PUT`/`DELETE` of users and items.
    Write,
}

/// One tenant: its API keys (by SHA-256), scopes and token bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant name (the `tenant` label of metrics and the access log).
    pub name: String,
    /// Lower-case hex SHA-256 of each API key of this tenant
    /// (`printf %s "$KEY" | sha256sum`): the config never holds a key itself.
    pub key_sha256: Vec<String>,
    /// What the keys may do.
    pub scopes: Vec<Scope>,
    /// Requests per second this tenant is admitted (its own token bucket); 0: no limit.
    #[serde(default)]
    pub qps: u32,
    /// Bucket size (default: `qps`).
    #[serde(default)]
    pub burst: u32,
}

pub(super) fn validate_tenants(tenants: &[TenantConfig]) -> anyhow::Result<()> {
    let mut names = std::collections::BTreeSet::new();
    let mut keys = std::collections::BTreeSet::new();
    for (i, t) in tenants.iter().enumerate() {
        let valid_name = !t.name.is_empty()
            && t.name.len() <= 64
            && t.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name || !names.insert(t.name.as_str()) {
            bail!("tenants[{i}].name: 1..=64 of [A-Za-z0-9_-], unique");
        }
        if t.key_sha256.is_empty() || t.scopes.is_empty() {
            bail!("tenants[{i}]: key_sha256 and scopes must not be empty");
        }
        for k in &t.key_sha256 {
            let hex = k.len() == 64 && k.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !hex || !keys.insert(k.as_str()) {
                bail!("tenants[{i}].key_sha256: 64 lower-case hex digits, each key once");
            }
        }
    }
    Ok(())
}
