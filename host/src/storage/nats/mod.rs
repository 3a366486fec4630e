//! The networked backend: several kefu nodes on one NATS JetStream.
//!
//! Every write is an op (see `ops`) published to one stream, `<PREFIX>_OPS`
//! (subjects `<prefix>.ops.<kind>`), and acknowledged by JetStream once
//! stored; each node applies the stream in its order to a view of its own
//! (a sled store under the data dir, see `applier`) and reads from it.
//! So every node reads what every node wrote, a multi-record write (a
//! decision and its effects, an event's commit) is one message and stays
//! all or nothing, and a conditional write (a state quota, an event id
//! seen before, a revisit or timer still due, an event still pending) is
//! judged by the stream's order, the same on every node. Component bytes
//! go to an object store by digest, checked against their SHA-256 when a
//! node fetches them. Key-value claims (see `claims`) give each node a
//! slot for unique ids and one node the lease of the shared background
//! work.
//!
//! Writes a caller reads back at once (state, versions, events...) wait
//! until the node's view applied them; decisions and audit events wait
//! only for JetStream's acknowledgement, at the next [`Durable::flush`]
//! (the group commit), so that one round trip serves many answers.

mod applier;
mod claims;
mod ops;

pub use ops::Change;

use self::applier::{Applier, NODE_HEADER, WAIT_HEADER};
use self::ops::{Op, Outcome};
use super::events::{
    ActionRecord, ActionStatus, EventCommit, EventRecord, PendingRef, TimerRecord,
};
use super::{
    AuditEvent, AuditLog, CanaryRecord, Decision, DecisionLog, DecisionQuery, Delivery, Durable,
    Effects, EventStore, Ids, Outbox, OutboxStats, RefundRecord, RevisitRecord, RevisitStatus,
    RevisitStore, ShopRecord, SledStorage, StorageError, VersionRecord, VersionStore,
};
use crate::state::{StateError, StateScope, StateStore};
use crate::steps::Step;
use async_nats::jetstream::{self, kv, message::PublishMessage, object_store, stream};
use bytes::Bytes;
use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a write waits for JetStream and the view before it fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening waits for NATS and for the view to catch up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest op (a decision with its input and output, an event commit).
const MAX_OP_BYTES: i32 = 8 << 20;
/// Writes go together in messages of at most this many bytes (a NATS
/// server takes messages of 1 MiB unless configured otherwise).
const BATCH_BYTES: usize = 512 << 10;

/// Where the NATS backend connects and what it names its streams.
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// `nats://host:port` (several, comma-separated, for a NATS cluster).
    pub url: String,
    /// Prefix of every stream, bucket and subject (lower case; streams in
    /// capitals): several kefu clusters can share one NATS.
    pub prefix: String,
    /// A NATS credentials file (`.creds`), if the server wants one.
    pub credentials: Option<PathBuf>,
    /// A token, if the server wants one.
    pub token: Option<String>,
    /// Where this node keeps its view (a sled store).
    pub view_dir: PathBuf,
    /// The view's page cache, bytes.
    pub cache_bytes: u64,
    /// Bytes of plugin state one shop may keep; 0: no quota.
    pub state_quota: u64,
    /// This node's name, in its claims and the log.
    pub node: String,
}

/// Why the NATS backend failed (turned into [`StorageError`] for callers).
fn nats_error(what: &str) -> impl Fn(String) -> StorageError + '_ {
    move |e| StorageError::Backend(format!("NATS {what}: {e}"))
}

pub struct NatsStorage {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    client: async_nats::Client,
    js: jetstream::Context,
    /// `<prefix>.ops`
    subject: String,
    view: Arc<SledStorage>,
    applier: Arc<Applier>,
    components: object_store::ObjectStore,
    claims: Arc<claims::Claims>,
    ids: claims::Ids,
    /// Writes nobody waits for (decisions, audit events), JSON, until the
    /// next flush publishes them as one batch.
    buffered: Mutex<Vec<Vec<u8>>>,
    /// Message ids (`<node>-<boot>-<n>`), so that JetStream drops a write
    /// sent twice, and never a new one: `boot` differs at each open.
    sent: AtomicU64,
    boot: u128,
    node: String,
}

impl Drop for NatsStorage {
    fn drop(&mut self) {
        let claims = self.claims.clone();
        let _ = self.run(async move {
            claims.release().await;
            Ok(())
        });
        if let Some(rt) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Within async code: nothing may block here.
                rt.shutdown_background();
            } else {
                // The stream is no longer followed: once the apply thread
                // ended, the view is closed and can be opened again.
                rt.shutdown_timeout(Duration::from_secs(2));
                self.applier.join();
            }
        }
    }
}

/// The backend's runtime until a store owns it: dropped by a failed open
/// (maybe within async code, where nothing may block) it shuts down in
/// the background.
struct Unowned(Option<tokio::runtime::Runtime>);

impl Drop for Unowned {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl NatsStorage {
    /// Connect, make the streams and buckets that are missing, open this
    /// node's view and bring it up to the stream's end.
    pub fn open(options: NatsOptions) -> Result<Self, StorageError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kefu-nats")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        let handle = runtime.handle().clone();
        let mut runtime = Unowned(Some(runtime));
        let prefix = options.prefix.to_ascii_lowercase();
        let upper = prefix.to_ascii_uppercase();
        let (client, js, stream, components, bucket) = {
            let (options, prefix, upper) = (options.clone(), prefix.clone(), upper);
            wait_on(&handle, async move {
                tokio::time::timeout(OPEN_TIMEOUT, connect(&options, &prefix, &upper))
                    .await
                    .map_err(|_| {
                        StorageError::Backend(format!(
                            "NATS at {} did not answer within {OPEN_TIMEOUT:?}",
                            options.url
                        ))
                    })?
            })?
        };
        let view = Arc::new(
            SledStorage::open_with_cache(&options.view_dir, options.cache_bytes)?
                .with_state_quota(options.state_quota),
        );
        let applied = view.meta(applier::APPLIED_KEY)?.unwrap_or(0);
        let last = {
            let mut stream = stream.clone();
            wait_on(&handle, async move {
                stream
                    .info()
                    .await
                    .map(|i| i.state.last_sequence)
                    .map_err(|e| nats_error("stream info")(e.to_string()))
            })?
        };
        if applied > last {
            return Err(StorageError::Corrupt(format!(
                "this node's view ({}) applied op {applied} but the NATS stream ends at op {last}: was NATS reset? Remove the view to build it again from NATS",
                options.view_dir.display()
            )));
        }
        let applier = Applier::new(applied);
        applier.start(
            &handle,
            stream,
            format!("{prefix}.ops.>"),
            view.clone(),
            options.node.clone(),
        );
        let claims = Arc::new(claims::Claims::new(bucket, options.node.clone()));
        {
            let claims = claims.clone();
            wait_on(&handle, async move {
                if !claims.take_slot().await {
                    return Err(StorageError::Backend(format!(
                        "no free node slot in NATS: {} nodes hold them all",
                        claims::SLOTS
                    )));
                }
                Ok(())
            })?;
        }
        {
            let claims = claims.clone();
            handle.spawn(async move {
                loop {
                    claims.renew().await;
                    tokio::time::sleep(claims::RENEW_EVERY).await;
                }
            });
        }
        let store = NatsStorage {
            runtime: runtime.0.take(),
            handle,
            client,
            js,
            subject: format!("{prefix}.ops"),
            view,
            applier,
            components,
            claims,
            ids: claims::Ids::new(),
            buffered: Mutex::new(Vec::new()),
            sent: AtomicU64::new(0),
            boot: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            node: options.node,
        };
        // Serve what the cluster wrote before this node came.
        store.applier.wait(last, false, OPEN_TIMEOUT)?;
        tracing::info!(node = %store.node, ops = last, "NATS store open, this node's view caught up");
        Ok(store)
    }

    /// Run `f` on the backend's runtime and wait for it.
    fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, StorageError>> + Send + 'static,
    ) -> Result<T, StorageError> {
        wait_on(&self.handle, f)
    }

    /// Publish `op`; the receiver gets its stream sequence once JetStream
    /// stored it.
    fn publish(
        &self,
        kind: &str,
        payload: Vec<u8>,
        wait: bool,
    ) -> Result<std::sync::mpsc::Receiver<Result<u64, StorageError>>, StorageError> {
        let mut message = PublishMessage::build()
            .payload(Bytes::from(payload))
            .message_id(format!(
                "{}-{}-{}",
                self.node,
                self.boot,
                self.sent.fetch_add(1, Ordering::Relaxed)
            ))
            .header(NODE_HEADER, self.node.as_str());
        if wait {
            message = message.header(WAIT_HEADER, "1");
        }
        let subject = format!("{}.{kind}", self.subject);
        let js = self.js.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let acked = async {
                let ack = js
                    .send_publish(subject, message)
                    .await
                    .map_err(|e| nats_error("publish")(e.to_string()))?;
                let since = std::time::Instant::now();
                let ack = tokio::time::timeout(WRITE_TIMEOUT, ack)
                    .await
                    .map_err(|_| StorageError::NotConfirmed(WRITE_TIMEOUT))?
                    .map_err(|e| {
                        StorageError::NotDurable(format!("JetStream did not store it: {e}"))
                    })?;
                metrics::histogram!("kefu_nats_ack_seconds").record(since.elapsed().as_secs_f64());
                Ok(ack.sequence)
            };
            let _ = tx.send(acked.await);
        });
        Ok(rx)
    }

    /// Write `op` and wait until this node's view applied it: what it
    /// answered.
    fn write(&self, op: Op) -> Result<Outcome, StorageError> {
        let seq = self.acked(self.publish(op.kind(), encode(&op)?, true)?)?;
        self.applier
            .wait(seq, true, WRITE_TIMEOUT)?
            .unwrap_or(Ok(Outcome::Done))
    }

    /// Write `ops` as one message, and wait until this node's view applied
    /// them: what each answered.
    fn write_all(&self, ops: Vec<Op>) -> Result<Vec<Result<Outcome, StorageError>>, StorageError> {
        let n = ops.len();
        let encoded = ops.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        // Sent together, then waited for in order.
        let sent = batches(encoded)
            .into_iter()
            .map(|batch| self.publish("batch", batch, true))
            .collect::<Result<Vec<_>, _>>()?;
        let mut outcomes = Vec::with_capacity(n);
        for ack in sent {
            let seq = self.acked(ack)?;
            match self.applier.wait(seq, true, WRITE_TIMEOUT)? {
                Some(Ok(Outcome::Many(many))) => outcomes.extend(many),
                other => {
                    return Err(StorageError::Backend(format!(
                        "a batch of writes answered {other:?}"
                    )));
                }
            }
        }
        if outcomes.len() != n {
            return Err(StorageError::Backend(format!(
                "{n} writes answered {} times",
                outcomes.len()
            )));
        }
        Ok(outcomes)
    }

    /// Write `op` with the next flush (the group commit), in one message
    /// with the others written until then.
    fn write_later(&self, op: Op) -> Result<(), StorageError> {
        self.write_encoded_later(encode(&op)?);
        Ok(())
    }

    /// [`NatsStorage::write_later`] of an op already encoded.
    fn write_encoded_later(&self, bytes: Vec<u8>) {
        self.buffered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(bytes);
    }

    fn acked(
        &self,
        rx: std::sync::mpsc::Receiver<Result<u64, StorageError>>,
    ) -> Result<u64, StorageError> {
        rx.recv_timeout(WRITE_TIMEOUT + Duration::from_secs(1))
            .map_err(|_| StorageError::NotConfirmed(WRITE_TIMEOUT))?
    }

    /// Call `f` with every change another node made that this node
    /// follows (a step's active version or canary, new events).
    pub fn on_change(&self, f: Box<dyn Fn(Change) + Send + Sync>) {
        self.applier.on_change(f);
    }

    /// Whether this node runs the shared background work now.
    pub fn leads(&self) -> bool {
        self.claims.leads()
    }

    /// Why the backend cannot serve now, if it cannot.
    pub fn unavailable(&self) -> Option<String> {
        if let Some(why) = self.applier.stuck() {
            return Some(why);
        }
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            state => Some(format!("NATS is not connected ({state:?})")),
        }
    }
}

/// What `kefu migrate` copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Records, by kind (sled tree).
    pub records: std::collections::BTreeMap<String, u64>,
    pub components: u64,
}

impl NatsStorage {
    /// Copy everything a sled store keeps into this (empty) NATS store:
    /// component bytes into the object store, every record as it was.
    /// `progress` hears the records copied so far.
    pub fn migrate_from(
        &self,
        source: &SledStorage,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Migrated, StorageError> {
        let ops = self.applier.applied();
        if ops > 0 {
            return Err(StorageError::Backend(format!(
                "NATS already holds {ops} kefu writes under this prefix: migrate into an empty one (another `prefix`), or remove those streams first"
            )));
        }
        let mut migrated = Migrated::default();
        for digest in source.version_digests()? {
            if let Some(bytes) = source.component(&digest)? {
                self.put_component(&digest, &bytes)?;
                migrated.components += 1;
            }
        }
        let mut copied = 0u64;
        source.export(&mut |tree, key, value| {
            self.write_later(Op::Import {
                tree: tree.into(),
                key: hex::encode(key),
                value: hex::encode(value),
            })?;
            *migrated.records.entry(tree.to_string()).or_default() += 1;
            copied += 1;
            if copied.is_multiple_of(2000) {
                self.flush()?;
                progress(copied);
            }
            Ok(())
        })?;
        self.flush()?;
        progress(copied);
        Ok(migrated)
    }
}

#[cfg(test)]
impl NatsStorage {
    /// Put bytes into the object store under any name, as a faulty or
    /// hostile writer could.
    pub fn put_object_unchecked(&self, name: &str, bytes: &[u8]) {
        let (store, name, data) = (self.components.clone(), name.to_string(), bytes.to_vec());
        self.run(async move {
            store
                .put(name.as_str(), &mut data.as_slice())
                .await
                .map(|_| ())
                .map_err(|e| StorageError::Backend(e.to_string()))
        })
        .unwrap();
    }
}

/// Connect and make what is missing: the ops stream, the components'
/// object store, the claims bucket.
async fn connect(
    options: &NatsOptions,
    prefix: &str,
    upper: &str,
) -> Result<
    (
        async_nats::Client,
        jetstream::Context,
        stream::Stream,
        object_store::ObjectStore,
        kv::Store,
    ),
    StorageError,
> {
    let mut connect = async_nats::ConnectOptions::new()
        .name(format!("kefu {}", options.node))
        .max_reconnects(None)
        // Back soon after NATS is: at most 2 s between tries.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).min(2000))
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => {
                    metrics::counter!("kefu_nats_reconnects_total").increment(1);
                    tracing::info!("NATS connection back");
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS connection lost: reconnecting");
                }
                _ => {}
            }
        });
    if let Some(path) = &options.credentials {
        connect = connect
            .credentials_file(path)
            .await
            .map_err(|e| nats_error("credentials")(format!("{}: {e}", path.display())))?;
    }
    if let Some(token) = &options.token {
        connect = connect.token(token.clone());
    }
    let client = connect
        .connect(options.url.as_str())
        .await
        .map_err(|e| nats_error("connect")(format!("{}: {e}", options.url)))?;
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: format!("{upper}_OPS"),
            subjects: vec![format!("{prefix}.ops.>")],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            max_message_size: MAX_OP_BYTES,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_error("ops stream")(e.to_string()))?;
    let components = match js.get_object_store(format!("{prefix}_components")).await {
        Ok(store) => store,
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: format!("{prefix}_components"),
                description: Some("kefu plugin components by SHA-256".into()),
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error("components store")(e.to_string()))?,
    };
    let bucket = match js.get_key_value(format!("{prefix}_claims")).await {
        Ok(kv) => kv,
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: format!("{prefix}_claims"),
                description: "kefu node slots and the background lease".into(),
                max_age: claims::LEASE_FOR,
                history: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error("claims bucket")(e.to_string()))?,
    };
    Ok((client, js, stream, components, bucket))
}

/// Encoded ops as `Op::Batch` messages of at most [`BATCH_BYTES`] (one
/// op larger than that goes alone).
fn batches(ops: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    const HEAD: &[u8] = b"{\"batch\":{\"ops\":[";
    let mut out = Vec::new();
    let mut batch: Vec<u8> = Vec::new();
    for op in ops {
        if !batch.is_empty() && batch.len() + op.len() + 3 > BATCH_BYTES {
            batch.extend_from_slice(b"]}}");
            out.push(std::mem::take(&mut batch));
        }
        batch.extend_from_slice(if batch.is_empty() { HEAD } else { b"," });
        batch.extend_from_slice(&op);
    }
    if !batch.is_empty() {
        batch.extend_from_slice(b"]}}");
        out.push(batch);
    }
    out
}

fn encode(op: &Op) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(op).map_err(|e| StorageError::Backend(format!("cannot encode a write: {e}")))
}

/// Run `f` on the backend's runtime and wait for it, from any thread
/// (async workers included: the wait is a plain channel, not a runtime).
fn wait_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    f: impl Future<Output = Result<T, StorageError>> + Send + 'static,
) -> Result<T, StorageError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .map_err(|_| StorageError::Backend("the NATS client stopped".into()))?
}

fn state_error(e: StorageError) -> StateError {
    StateError::Unavailable(e.to_string())
}

impl StateStore for NatsStorage {
    fn get(&self, scope: &StateScope, key: &str) -> Result<Option<String>, StateError> {
        self.view.get(scope, key)
    }
    fn set(&self, scope: &StateScope, key: &str, value: &str) -> Result<(), StateError> {
        match self
            .write(Op::StateSet {
                shop: scope.shop.clone(),
                plugin: scope.plugin.clone(),
                key: key.into(),
                value: value.into(),
            })
            .map_err(state_error)?
        {
            Outcome::State(e) => Err(e),
            _ => Ok(()),
        }
    }
    fn delete(&self, scope: &StateScope, key: &str) -> Result<bool, StateError> {
        match self
            .write(Op::StateDelete {
                shop: scope.shop.clone(),
                plugin: scope.plugin.clone(),
                key: key.into(),
            })
            .map_err(state_error)?
        {
            Outcome::State(e) => Err(e),
            Outcome::Bool(there) => Ok(there),
            _ => Ok(false),
        }
    }
    fn list_keys(
        &self,
        scope: &StateScope,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        self.view.list_keys(scope, prefix, after, limit)
    }
}

impl Ids for NatsStorage {
    fn next_id(&self) -> Result<u64, StorageError> {
        let slot = self.claims.slot().ok_or_else(|| {
            StorageError::Failing("this node holds no id slot in NATS (cut off from it?)".into())
        })?;
        Ok(self.ids.next(slot, chrono::Utc::now().timestamp_millis()))
    }
}

impl Durable for NatsStorage {
    fn flush(&self) -> Result<(), StorageError> {
        let ops = std::mem::take(&mut *self.buffered.lock().unwrap_or_else(|e| e.into_inner()));
        // Cut off from NATS: fail now rather than when the writes time
        // out; nothing of them was sent.
        if let Some(why) = self.unavailable() {
            return Err(StorageError::Failing(why));
        }
        let mut acks = Vec::new();
        for batch in batches(ops) {
            acks.push(self.publish("batch", batch, false)?);
        }
        let mut last = 0;
        for ack in acks {
            last = last.max(self.acked(ack)?);
        }
        if last > 0 {
            // Read what was written: the view has it too.
            self.applier.wait(last, false, WRITE_TIMEOUT)?;
        }
        match self.unavailable() {
            Some(why) => Err(StorageError::Failing(why)),
            None => Ok(()),
        }
    }

    fn probe(&self) -> Result<(), StorageError> {
        if let Some(why) = self.unavailable() {
            return Err(StorageError::Failing(why));
        }
        // A round trip to JetStream.
        let js = self.js.clone();
        self.run(async move {
            tokio::time::timeout(WRITE_TIMEOUT, js.query_account())
                .await
                .map_err(|_| StorageError::NotConfirmed(WRITE_TIMEOUT))?
                .map(|_| ())
                .map_err(|e| StorageError::Failing(format!("JetStream: {e}")))
        })?;
        self.flush()
    }
}

impl DecisionLog for NatsStorage {
    fn record_decision(&self, decision: &Decision, effects: &Effects) -> Result<(), StorageError> {
        // The hot path: written with the group commit, encoded from the
        // caller's records (no copy of them first).
        let op = ops::DecisionRef::Decision { decision, effects };
        self.write_encoded_later(
            serde_json::to_vec(&op)
                .map_err(|e| StorageError::Backend(format!("cannot encode a decision: {e}")))?,
        );
        Ok(())
    }
    fn decisions(&self, query: &DecisionQuery) -> Result<Vec<Decision>, StorageError> {
        self.view.decisions(query)
    }
    fn scan_decisions(
        &self,
        query: &DecisionQuery,
        visit: &mut dyn FnMut(Decision) -> bool,
    ) -> Result<(), StorageError> {
        self.view.scan_decisions(query, visit)
    }
    fn prune_decisions(&self, before_ms: i64) -> Result<usize, StorageError> {
        match self.write(Op::PruneDecisions { before_ms })? {
            Outcome::Count(n) => Ok(n),
            _ => Ok(0),
        }
    }
    fn refunds(&self, shop: &str, limit: usize) -> Result<Vec<RefundRecord>, StorageError> {
        self.view.refunds(shop, limit)
    }
    fn orders_confirmed(
        &self,
        shop: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(i64, u64)>, StorageError> {
        self.view.orders_confirmed(shop, since_ms, until_ms)
    }
    fn refunds_between(
        &self,
        shop: &str,
        since_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<RefundRecord>, StorageError> {
        self.view.refunds_between(shop, since_ms, until_ms, limit)
    }
}

impl RevisitStore for NatsStorage {
    fn put_revisits(&self, records: &[RevisitRecord]) -> Result<(), StorageError> {
        self.write(Op::PutRevisits {
            records: records.to_vec(),
        })
        .map(|_| ())
    }
    fn fire_revisits(
        &self,
        records: &[RevisitRecord],
        deliveries: &[Delivery],
    ) -> Result<(), StorageError> {
        // A thousand revisits with their webhooks outgrow one message: in
        // ops of 100, each revisit with its webhooks (their keys name it).
        let chunks: Vec<&[RevisitRecord]> = records.chunks(100).collect();
        let chunk_of: std::collections::HashMap<u64, usize> = chunks
            .iter()
            .enumerate()
            .flat_map(|(i, chunk)| chunk.iter().map(move |r| (r.id, i)))
            .collect();
        let mut mine: Vec<Vec<Delivery>> = vec![Vec::new(); chunks.len().max(1)];
        for d in deliveries {
            // `revisit-<id>-<attempt>`; any other goes with the first op.
            let i = d
                .key
                .strip_prefix("revisit-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|id| id.parse().ok())
                .and_then(|id: u64| chunk_of.get(&id).copied())
                .unwrap_or(0);
            mine[i].push(d.clone());
        }
        let ops: Vec<Op> = if chunks.is_empty() {
            vec![Op::PutDeliveries {
                deliveries: mine.swap_remove(0),
            }]
        } else {
            chunks
                .into_iter()
                .zip(mine)
                .map(|(chunk, deliveries)| Op::FireRevisits {
                    records: chunk.to_vec(),
                    deliveries,
                })
                .collect()
        };
        for outcome in self.write_all(ops)? {
            outcome?;
        }
        Ok(())
    }
    fn revisits(
        &self,
        shop: &str,
        status: Option<RevisitStatus>,
        limit: usize,
    ) -> Result<Vec<RevisitRecord>, StorageError> {
        self.view.revisits(shop, status, limit)
    }
    fn revisit(&self, id: u64) -> Result<Option<RevisitRecord>, StorageError> {
        self.view.revisit(id)
    }
    fn due_revisits(&self, now: i64, limit: usize) -> Result<Vec<RevisitRecord>, StorageError> {
        self.view.due_revisits(now, limit)
    }
    fn revisits_due_before(&self, before: i64) -> Result<u64, StorageError> {
        self.view.revisits_due_before(before)
    }
    fn set_do_not_contact(&self, shop: &str, customer: &str, on: bool) -> Result<(), StorageError> {
        self.write(Op::DoNotContact {
            shop: shop.into(),
            customer: customer.into(),
            on,
        })
        .map(|_| ())
    }
    fn is_do_not_contact(&self, shop: &str, customer: &str) -> Result<bool, StorageError> {
        self.view.is_do_not_contact(shop, customer)
    }
}

impl Outbox for NatsStorage {
    fn put_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StorageError> {
        self.write(Op::PutDeliveries {
            deliveries: deliveries.to_vec(),
        })
        .map(|_| ())
    }
    fn deliveries_ready(
        &self,
        now_ms: i64,
        per_shop: usize,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        self.view.deliveries_ready(now_ms, per_shop, limit)
    }
    fn deliveries(&self, shop: &str) -> Result<Vec<Delivery>, StorageError> {
        self.view.deliveries(shop)
    }
    fn delivery(&self, key: &str) -> Result<Option<Delivery>, StorageError> {
        self.view.delivery(key)
    }
    fn remove_delivery(&self, key: &str) -> Result<(), StorageError> {
        self.write(Op::RemoveDelivery { key: key.into() })
            .map(|_| ())
    }
    fn outbox_stats(&self) -> Result<OutboxStats, StorageError> {
        self.view.outbox_stats()
    }
}

impl VersionStore for NatsStorage {
    fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError> {
        if self.view.component(digest)?.is_none() {
            let store = self.components.clone();
            let (name, data) = (digest.to_string(), bytes.to_vec());
            self.run(async move {
                if store.info(&name).await.is_ok() {
                    return Ok(());
                }
                store
                    .put(name.as_str(), &mut data.as_slice())
                    .await
                    .map(|_| ())
                    .map_err(|e| nats_error("put component")(e.to_string()))
            })?;
            self.view.put_component(digest, bytes)?;
        }
        Ok(())
    }
    fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(bytes) = self.view.component(digest)? {
            return Ok(Some(bytes));
        }
        let store = self.components.clone();
        let name = digest.to_string();
        let fetched = self.run(async move {
            use tokio::io::AsyncReadExt;
            let mut object = match store.get(&name).await {
                Ok(object) => object,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(nats_error("get component")(e.to_string())),
            };
            let mut bytes = Vec::new();
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| nats_error("read component")(e.to_string()))?;
            Ok(Some(bytes))
        })?;
        let Some(bytes) = fetched else {
            return Ok(None);
        };
        // What another node stored is only run if it is what its name says.
        let actual = crate::runtime::digest(&bytes);
        if actual != digest {
            return Err(StorageError::Corrupt(format!(
                "component {digest} in NATS has SHA-256 {actual}: refused"
            )));
        }
        self.view.put_component(digest, &bytes)?;
        Ok(Some(bytes))
    }
    fn put_version(
        &self,
        shop: &str,
        step: Step,
        record: &VersionRecord,
    ) -> Result<(), StorageError> {
        self.write(Op::PutVersion {
            shop: shop.into(),
            step,
            record: record.clone(),
        })
        .map(|_| ())
    }
    fn versions(&self, shop: &str, step: Step) -> Result<Vec<VersionRecord>, StorageError> {
        self.view.versions(shop, step)
    }
    fn remove_versions(
        &self,
        shop: &str,
        step: Step,
        versions: &[u64],
    ) -> Result<(), StorageError> {
        self.write(Op::RemoveVersions {
            shop: shop.into(),
            step,
            versions: versions.to_vec(),
        })
        .map(|_| ())
    }
    fn version_digests(&self) -> Result<HashSet<String>, StorageError> {
        self.view.version_digests()
    }
    /// Only this node's copy: another node may be about to name the
    /// component in a version it writes, so the object store keeps it.
    fn remove_component(&self, digest: &str) -> Result<(), StorageError> {
        self.view.remove_component(digest)
    }
    fn set_active(&self, shop: &str, step: Step, version: u64) -> Result<(), StorageError> {
        self.write(Op::SetActive {
            shop: shop.into(),
            step,
            version,
        })
        .map(|_| ())
    }
    fn active(&self, shop: &str, step: Step) -> Result<Option<u64>, StorageError> {
        self.view.active(shop, step)
    }
    fn put_shop_record(&self, record: &ShopRecord) -> Result<(), StorageError> {
        self.write(Op::PutShopRecord {
            record: record.clone(),
        })
        .map(|_| ())
    }
    fn shop_record(&self, shop: &str) -> Result<Option<ShopRecord>, StorageError> {
        self.view.shop_record(shop)
    }
    fn set_canary(
        &self,
        shop: &str,
        step: Step,
        record: Option<&CanaryRecord>,
    ) -> Result<(), StorageError> {
        self.write(Op::SetCanary {
            shop: shop.into(),
            step,
            record: record.cloned(),
        })
        .map(|_| ())
    }
    fn canary(&self, shop: &str, step: Step) -> Result<Option<CanaryRecord>, StorageError> {
        self.view.canary(shop, step)
    }
}

impl AuditLog for NatsStorage {
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StorageError> {
        self.write_later(Op::Audit {
            event: event.clone(),
        })
    }
    fn audit(&self, shop: Option<&str>, limit: usize) -> Result<Vec<AuditEvent>, StorageError> {
        self.view.audit(shop, limit)
    }
}

impl EventStore for NatsStorage {
    fn accept_event(&self, record: &EventRecord) -> Result<Option<EventRecord>, StorageError> {
        match self.write(Op::AcceptEvent {
            record: record.clone(),
        })? {
            Outcome::Event(seen) => Ok(seen.map(|e| *e)),
            _ => Ok(None),
        }
    }
    fn accept_events(
        &self,
        records: &[EventRecord],
    ) -> Result<Vec<Option<EventRecord>>, StorageError> {
        let ops = records
            .iter()
            .map(|record| Op::AcceptEvent {
                record: record.clone(),
            })
            .collect();
        self.write_all(ops)?
            .into_iter()
            .map(|outcome| match outcome? {
                Outcome::Event(seen) => Ok(seen.map(|e| *e)),
                _ => Ok(None),
            })
            .collect()
    }
    fn event(&self, shop: &str, id: &str) -> Result<Option<EventRecord>, StorageError> {
        self.view.event(shop, id)
    }
    fn pending_events(&self, limit: usize) -> Result<Vec<PendingRef>, StorageError> {
        self.view.pending_events(limit)
    }
    fn subject_events(
        &self,
        shop: &str,
        subject: &str,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StorageError> {
        self.view.subject_events(shop, subject, limit)
    }
    fn subject_state(&self, shop: &str, subject: &str) -> Result<Option<String>, StorageError> {
        self.view.subject_state(shop, subject)
    }
    fn commit_event(&self, commit: &EventCommit) -> Result<(), StorageError> {
        self.write(Op::CommitEvent {
            commit: commit.clone(),
        })
        .map(|_| ())
    }
    fn retry_event(
        &self,
        shop: &str,
        id: &str,
        seq: u64,
    ) -> Result<Option<EventRecord>, StorageError> {
        match self.write(Op::RetryEvent {
            shop: shop.into(),
            id: id.into(),
            seq,
        })? {
            Outcome::Event(e) => Ok(e.map(|e| *e)),
            _ => Ok(None),
        }
    }
    fn due_timers(&self, now: i64, limit: usize) -> Result<Vec<TimerRecord>, StorageError> {
        self.view.due_timers(now, limit)
    }
    fn timers(&self, shop: &str, subject: &str) -> Result<Vec<TimerRecord>, StorageError> {
        self.view.timers(shop, subject)
    }
    fn fire_timer(&self, timer: &TimerRecord, event: &EventRecord) -> Result<(), StorageError> {
        self.write(Op::FireTimer {
            timer: timer.clone(),
            event: event.clone(),
        })
        .map(|_| ())
    }
    fn actions(
        &self,
        shop: &str,
        status: Option<ActionStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StorageError> {
        self.view.actions(shop, status, after, limit)
    }
    fn action(&self, shop: &str, id: u64) -> Result<Option<ActionRecord>, StorageError> {
        self.view.action(shop, id)
    }
    fn set_action_status(
        &self,
        shop: &str,
        id: u64,
        status: ActionStatus,
    ) -> Result<bool, StorageError> {
        match self.write(Op::SetActionStatus {
            shop: shop.into(),
            id,
            status,
        })? {
            Outcome::Bool(b) => Ok(b),
            _ => Ok(false),
        }
    }
    fn decision_at(
        &self,
        shop: &str,
        at_ms: i64,
        id: u64,
    ) -> Result<Option<Decision>, StorageError> {
        self.view.decision_at(shop, at_ms, id)
    }
    fn prune_events(&self, before_ms: i64) -> Result<usize, StorageError> {
        match self.write(Op::PruneEvents { before_ms })? {
            Outcome::Count(n) => Ok(n),
            _ => Ok(0),
        }
    }
}
