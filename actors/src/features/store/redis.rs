//! The shared backend: Redis as the truth every replica of a feature shard reads and
//! writes (ADR 0016). The shard actors keep their TTL caches in front; what one replica
//! writes, the others hear on the shard's pub/sub channel and drop from their caches.
//!
//! Keys carry the shard as a hash tag, so one shard's keys share a Redis Cluster slot:
//! `<prefix>:{f<s>}:p:<user>` (codec bytes), `<prefix>:{f<s>}:e:<event id>` (expires after
//! the dedupe window), channel `<prefix>:{f<s>}:changed`.
//!
//! Reads: one pipelined round trip per batch of misses. Writes: a writer task takes every
//! job queued while the last group was in flight, reads what the group touches (one round
//! trip), applies it with `apply_ops` and commits with one compare-and-set script (one
//! round trip) that checks every value it read is unchanged, writes, sets the event ids
//! and publishes the users changed. A concurrent writer on another replica makes the
//! check fail: the group is read and applied again. Durable once Redis replies — with
//! `appendonly yes` and `appendfsync always`, which the store checks at connect unless
//! `require_fsync: false`.

use super::{apply_ops, Change, Committed, Done, FoldContext, OnChange, ProfileStore, ReadResult};
use crate::types::WriteOp;
use anyhow::{bail, Context};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use prometheus::Histogram;
use recd_runtime::RecdError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Jobs queued for the writer before writes are refused.
const QUEUE: usize = 256;
/// Jobs one group takes at most.
const GROUP: usize = 64;
/// Ops one group takes at most (then it is closed, whatever its job count).
const GROUP_OPS: usize = 4096;
/// Times a group is read and applied again after a concurrent write.
const ATTEMPTS: usize = 5;

/// Checks that nothing read changed, then writes, remembers event ids and publishes.
/// KEYS: n profile keys, the new event keys, the channel. ARGV: n, n old values ('' =
/// absent), n new values ('' = delete), the dedupe window (s), the message.
const COMMIT: &str = r"
local n = tonumber(ARGV[1])
for i = 1, n do
  local cur = redis.call('GET', KEYS[i])
  if cur == false then cur = '' end
  if cur ~= ARGV[1 + i] then return 0 end
end
for i = 1, n do
  local new = ARGV[1 + n + i]
  if new == '' then redis.call('DEL', KEYS[i]) else redis.call('SET', KEYS[i], new) end
end
for i = n + 1, #KEYS - 1 do
  redis.call('SET', KEYS[i], '1', 'EX', ARGV[2 + 2 * n])
end
if n > 0 then redis.call('PUBLISH', KEYS[#KEYS], ARGV[3 + 2 * n]) end
return 1
";

/// Where the shared store is and how it is used.
pub struct SharedSettings {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Key prefix (several deployments may share one Redis).
    pub prefix: String,
    /// Timeout of every Redis call.
    pub timeout: Duration,
    /// Refuse a server that does not fsync every write before replying.
    pub require_fsync: bool,
    /// How writes are applied.
    pub fold: FoldContext,
    /// How long an event id is remembered.
    pub dedupe_window: Duration,
    /// Commit latency.
    pub commit_seconds: Histogram,
    /// Feature shards in the cluster (checked against `<prefix>:layout`).
    pub shards: usize,
}

struct Job {
    ops: Vec<WriteOp>,
    done: Done,
}

/// One feature shard's view of the shared store.
pub struct Shared {
    con: ConnectionManager,
    keys: Keys,
    timeout: Duration,
    jobs: mpsc::Sender<Job>,
    listener: Arc<Mutex<Option<OnChange>>>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Clone)]
struct Keys {
    base: String,
}

impl Keys {
    fn profile(&self, user: &str) -> String {
        format!("{}:p:{user}", self.base)
    }
    fn event(&self, id: &str) -> String {
        format!("{}:e:{id}", self.base)
    }
    fn channel(&self) -> String {
        format!("{}:changed", self.base)
    }
}

fn unix_ms() -> u64 {
    recd_runtime::clock::unix_time().as_millis() as u64
}

impl Shared {
    /// Connects shard `shard`'s view (checking durability), and starts its writer and
    /// its change listener. Must run inside the tokio runtime.
    pub async fn connect(shard: usize, s: SharedSettings) -> anyhow::Result<Self> {
        let client = redis::Client::open(s.url.as_str()).context("features.store.redis.url")?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(s.timeout))
            .set_connection_timeout(Some(s.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut con = (client.get_connection_manager_with_config(config).await)
            .context("connecting to the feature store (redis)")?;
        if s.require_fsync {
            check_fsync(&mut con).await?;
        }
        // users are placed by the shard count: a server written under another one is refused
        let layout = format!("{}:layout", s.prefix);
        let set: Option<String> = redis::cmd("SET")
            .arg(&layout)
            .arg(s.shards)
            .arg("NX")
            .query_async(&mut con)
            .await?;
        if set.is_none() {
            let held: String = redis::cmd("GET").arg(&layout).query_async(&mut con).await?;
            anyhow::ensure!(
                held == s.shards.to_string(),
                "the feature store (redis, prefix {:?}) was written with {held} feature shards, the                  config has {}: features.shards changed (users would be looked up in the wrong shard)",
                s.prefix,
                s.shards
            );
        }
        let keys = Keys {
            base: format!("{}:{{f{shard}}}", s.prefix),
        };
        let origin = format!("{:016x}", rand_u64());
        let (jobs, rx) = mpsc::channel(QUEUE);
        let listener: Arc<Mutex<Option<OnChange>>> = Arc::new(Mutex::new(None));
        let writer = Writer {
            con: con.clone(),
            keys: keys.clone(),
            origin: origin.clone(),
            script: redis::Script::new(COMMIT),
            settings: s,
        };
        let timeout = writer.settings.timeout;
        let tasks = vec![
            tokio::spawn(writer.run(rx)),
            tokio::spawn(listen(
                client,
                keys.channel(),
                origin,
                Arc::clone(&listener),
            )),
        ];
        Ok(Self {
            con,
            keys,
            timeout,
            jobs,
            listener,
            tasks,
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Refuses a server that would acknowledge writes it has not synced to its AOF.
pub(crate) async fn check_fsync(con: &mut ConnectionManager) -> anyhow::Result<()> {
    let get = |name: &'static str| {
        let mut con = con.clone();
        async move {
            let kv: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut con)
                .await?;
            anyhow::Ok(kv.get(1).cloned().unwrap_or_default())
        }
    };
    let (aof, sync) = (get("appendonly").await, get("appendfsync").await);
    match (aof, sync) {
        (Ok(a), Ok(s)) if a == "yes" && s == "always" => Ok(()),
        (Ok(a), Ok(s)) => bail!(
            "the feature store (redis) has appendonly {a}, appendfsync {s}: an acknowledged \
             write would not be on disk. Set appendonly yes and appendfsync always, or \
             features.store.redis.require_fsync: false to accept the risk"
        ),
        (Err(e), _) | (_, Err(e)) => bail!(
            "cannot check the feature store's durability (CONFIG GET: {e}); set \
             features.store.redis.require_fsync: false if CONFIG is disabled there"
        ),
    }
}

fn rand_u64() -> u64 {
    let t = recd_runtime::clock::unix_time().as_nanos() as u64;
    recd_runtime::hash::SplitMix64::new(t ^ u64::from(std::process::id()) << 32).next_u64()
}

impl ProfileStore for Shared {
    fn read<'a>(&'a self, users: &'a [Arc<str>], timeout: Duration) -> BoxFuture<'a, ReadResult> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for u in users {
                pipe.cmd("GET").arg(self.keys.profile(u));
            }
            let mut con = self.con.clone();
            let wait = timeout.min(self.timeout);
            let r = tokio::time::timeout(wait, pipe.query_async::<Vec<Option<Vec<u8>>>>(&mut con))
                .await;
            Ok(r.map_err(|_| anyhow::anyhow!("feature store read timed out"))??)
        })
    }

    fn write(&self, ops: Vec<WriteOp>, done: Done) -> Result<(), RecdError> {
        match self.jobs.try_send(Job { ops, done }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                Err(RecdError::overloaded("feature store write queue is full"))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(RecdError::unavailable("feature store writer stopped"))
            }
        }
    }

    fn shared(&self) -> bool {
        true
    }

    fn watch(&self, on_change: OnChange) {
        if let Ok(mut l) = self.listener.lock() {
            *l = Some(on_change);
        }
    }
}

struct Writer {
    con: ConnectionManager,
    keys: Keys,
    origin: String,
    script: redis::Script,
    settings: SharedSettings,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            // at most GROUP jobs and GROUP_OPS ops: the fold runs on this task (an async
            // worker), a few milliseconds of CPU at most
            let mut ops_in = first.ops.len();
            let mut group = vec![first];
            while group.len() < GROUP && ops_in < GROUP_OPS {
                match rx.try_recv() {
                    Ok(job) => {
                        ops_in += job.ops.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            let (ops, dones): (Vec<Vec<WriteOp>>, Vec<Done>) =
                group.into_iter().map(|j| (j.ops, j.done)).unzip();
            let timer = self.settings.commit_seconds.start_timer();
            let results = self.commit(&ops).await;
            timer.observe_duration();
            for (done, r) in dones.into_iter().zip(results) {
                done(r);
            }
        }
    }

    /// Every job's fate: read, apply, compare-and-set; again after a concurrent write.
    async fn commit(&mut self, group: &[Vec<WriteOp>]) -> Vec<Result<Committed, RecdError>> {
        let fail = |e: String| {
            group
                .iter()
                .map(|_| Err(RecdError::unavailable(e.clone())))
                .collect()
        };
        for attempt in 0..ATTEMPTS {
            match self.attempt(group).await {
                Ok(Some(results)) => return results,
                // another replica wrote a value this group read: again, after a jittered
                // pause so two replicas racing on one user do not race again in step
                Ok(None) => {
                    let jitter = rand_u64() % 4 + 1;
                    tokio::time::sleep(Duration::from_millis(jitter << attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "feature store commit failed");
                    return fail(format!("feature store: {e:#}"));
                }
            }
        }
        fail("feature store: concurrent writes kept conflicting, retry".into())
    }

    async fn attempt(
        &mut self,
        group: &[Vec<WriteOp>],
    ) -> anyhow::Result<Option<Vec<Result<Committed, RecdError>>>> {
        let mut users: Vec<Arc<str>> = Vec::new();
        let mut ids: Vec<Arc<str>> = Vec::new();
        let (mut seen_u, mut seen_e) = (HashSet::new(), HashSet::new());
        for op in group.iter().flatten() {
            if seen_u.insert(Arc::clone(op.user())) {
                users.push(Arc::clone(op.user()));
            }
            if let WriteOp::Event { event_id, .. } = op {
                if seen_e.insert(Arc::clone(event_id)) {
                    ids.push(Arc::clone(event_id));
                }
            }
        }
        let mut pipe = redis::pipe();
        users.iter().for_each(|u| {
            pipe.cmd("GET").arg(self.keys.profile(u));
        });
        ids.iter().for_each(|id| {
            pipe.cmd("EXISTS").arg(self.keys.event(id));
        });
        let timeout = self.settings.timeout;
        let read = tokio::time::timeout(
            timeout,
            pipe.query_async::<Vec<redis::Value>>(&mut self.con),
        )
        .await
        .context("read timed out")??;
        let (profiles, exists) = read.split_at(users.len());
        let original: HashMap<Arc<str>, Option<Vec<u8>>> = (users.iter().cloned())
            .zip(
                profiles
                    .iter()
                    .map(|v| redis::from_redis_value::<Option<Vec<u8>>>(v.clone())),
            )
            .map(|(u, v)| Ok((u, v?)))
            .collect::<anyhow::Result<_>>()?;
        let mut seen: HashSet<Arc<str>> = HashSet::new();
        for (id, v) in ids.iter().zip(exists) {
            if redis::from_redis_value::<bool>(v.clone())? {
                seen.insert(Arc::clone(id));
            }
        }
        let mut view = original.clone();
        let mut new_events: Vec<Arc<str>> = Vec::new();
        let now_secs = unix_ms() / 1000;
        let mut results = Vec::with_capacity(group.len());
        for job in group {
            let applied = apply_ops(
                &self.settings.fold,
                job,
                now_secs,
                |u| Ok(view.get(u).cloned().flatten()),
                |id| Ok(seen.contains(id)),
            );
            match applied {
                Ok((committed, events)) => {
                    for (u, b) in &committed.changed {
                        view.insert(Arc::clone(u), b.clone());
                    }
                    seen.extend(events.iter().cloned());
                    new_events.extend(events);
                    results.push(Ok(committed));
                }
                Err(e) => results.push(Err(super::refused(&e))),
            }
        }
        let changed: Vec<&Arc<str>> = users
            .iter()
            .filter(|u| view.get(*u) != original.get(*u))
            .collect();
        if changed.is_empty() && new_events.is_empty() {
            return Ok(Some(results));
        }
        let mut inv = self.script.prepare_invoke();
        for u in &changed {
            inv.key(self.keys.profile(u));
        }
        for id in &new_events {
            inv.key(self.keys.event(id));
        }
        inv.key(self.keys.channel());
        inv.arg(changed.len());
        let bytes = |v: Option<&Option<Vec<u8>>>| v.cloned().flatten().unwrap_or_default();
        for u in &changed {
            inv.arg(bytes(original.get(*u)));
        }
        for u in &changed {
            inv.arg(bytes(view.get(*u)));
        }
        inv.arg(self.settings.dedupe_window.as_secs().max(1));
        let mut message = format!("{}\n{}", self.origin, unix_ms());
        for u in &changed {
            message.push('\n');
            message.push_str(u);
        }
        inv.arg(message);
        let ok: i64 = tokio::time::timeout(timeout, inv.invoke_async(&mut self.con))
            .await
            .context("commit timed out")??;
        Ok((ok == 1).then_some(results))
    }
}

/// Listens on the shard's channel and tells the listener what other writers changed;
/// after any gap (a reconnect) it says `All`: messages may have been missed.
async fn listen(
    client: redis::Client,
    channel: String,
    origin: String,
    listener: Arc<Mutex<Option<OnChange>>>,
) {
    let tell = |c: Change| {
        if let Ok(l) = listener.lock() {
            if let Some(f) = l.as_ref() {
                f(c);
            }
        }
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut ps) => {
                if ps.subscribe(&channel).await.is_ok() {
                    backoff = Duration::from_millis(100);
                    tell(Change::All);
                    let mut messages = ps.on_message();
                    while let Some(msg) = messages.next().await {
                        let payload: Option<String> = msg.get_payload().ok();
                        let mut lines = payload.as_deref().unwrap_or("").split('\n');
                        let (from, at) = (lines.next(), lines.next().map(str::parse::<u64>));
                        match (from, at) {
                            (Some(o), _) if o == origin => {}
                            (_, Some(Ok(at))) => {
                                tell(Change::Users(lines.map(Arc::from).collect(), at))
                            }
                            // who changed is unknown: nothing cached can be trusted
                            _ => {
                                tracing::warn!("unreadable change message: caches dropped");
                                tell(Change::All);
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "feature store change listener cannot connect"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
