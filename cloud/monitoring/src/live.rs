//! Live push over Socket.IO (protocol v5, path `/socket.io/`, namespace `/live`).
//!
//! A client connects with `auth: {token}`; the token is verified before the socket joins the
//! namespace, so bad or revoked tokens never get in. `subscribe {device_id}` checks ownership with
//! the registry and joins the device's room; `subscribe_fleet` joins the status-only room of every
//! device the user may see (admins: one room for all). The consumer pushes `telemetry` to a
//! device's room and `status` to its room and its fleet rooms. Each socket has a bounded packet
//! queue (`live_buffer`): a client too slow to drain it loses pushes (counted in
//! `edgewatch_live_dropped_total`) instead of slowing the consumer, which never waits on clients.
//!
//! Several replicas: rooms are per process. With `live_redis_url` set, the socketioxide Redis
//! adapter relays every push through Redis pub/sub, so a push made by the replica that consumed
//! a message reaches the clients connected to the others; without it (one process, the embedded
//! shape) the in-process adapter does.

use std::sync::Arc;

use edgewatch_common::auth::{Principal, TokenVerifier};
use edgewatch_protocol::{Batch, DeviceId, StatusEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketioxide::{
    BroadcastError, SocketIo,
    adapter::{Adapter, Emitter, LocalAdapter},
    extract::{AckSender, SocketRef, State, TryData},
    handler::ConnectHandler,
};
use socketioxide_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

use crate::registry::{self, Registry};

pub const NAMESPACE: &str = "/live";
const ALL_DEVICES: &str = "fleet:*";

/// The handle the consumer pushes through.
#[derive(Clone)]
pub enum Live {
    Local(SocketIo<LocalAdapter>),
    Redis(SocketIo<RedisAdapter<Emitter>>),
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot reach Redis for the Socket.IO adapter at {url}: {cause}")]
    Redis { url: String, cause: String },
}

#[derive(Clone)]
struct LiveState {
    verifier: Arc<dyn TokenVerifier>,
    registry: Arc<dyn Registry>,
}

/// Who is on a socket; kept in its extensions.
#[derive(Clone)]
struct Session {
    token: String,
    principal: Principal,
}

#[derive(Deserialize)]
struct Auth {
    token: String,
}

#[derive(Deserialize)]
struct DeviceRequest {
    device_id: String,
}

#[derive(Serialize)]
struct TelemetryEvent<'a> {
    device_id: DeviceId,
    seq: u64,
    ts: edgewatch_protocol::Timestamp,
    metrics: &'a std::collections::BTreeMap<edgewatch_protocol::MetricName, f64>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

fn device_room(device: DeviceId) -> String {
    format!("device:{device}")
}

fn fleet_room(device: DeviceId) -> String {
    format!("fleet:{device}")
}

/// Puts the Socket.IO layer on `router`; returns it with the push handle. With `redis_url`
/// (`redis://...`), pushes are shared with the other replicas under the key prefix `prefix`.
pub async fn attach(
    router: axum::Router,
    verifier: Arc<dyn TokenVerifier>,
    registry: Arc<dyn Registry>,
    buffer: usize,
    redis: Option<(&str, &str)>,
) -> Result<(axum::Router, Live), LiveError> {
    let state = LiveState { verifier, registry };
    let builder = SocketIo::builder().max_buffer_size(buffer.max(1)).with_state(state);
    match redis {
        None => {
            let (layer, io) = builder.build_layer();
            io.ns(NAMESPACE, on_connect::<LocalAdapter>.with(authenticate::<LocalAdapter>));
            Ok((router.layer(layer), Live::Local(io)))
        }
        Some((url, prefix)) => {
            let failed = |cause: String| LiveError::Redis { url: url.to_owned(), cause };
            // The adapter's driver speaks RESP3.
            let url3 = if url.contains("protocol=") {
                url.to_owned()
            } else if url.contains('?') {
                format!("{url}&protocol=resp3")
            } else {
                format!("{url}?protocol=resp3")
            };
            let client = redis::Client::open(url3).map_err(|e| failed(e.to_string()))?;
            let config = RedisAdapterConfig::new().with_prefix(prefix.to_owned());
            let adapter = RedisAdapterCtr::new_with_redis_config(&client, config)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let (layer, io) = builder.with_adapter::<RedisAdapter<Emitter>>(adapter).build_layer();
            io.ns(
                NAMESPACE,
                on_connect::<RedisAdapter<Emitter>>.with(authenticate::<RedisAdapter<Emitter>>),
            )
            .await
            .map_err(|e| failed(e.to_string()))?;
            Ok((router.layer(layer), Live::Redis(io)))
        }
    }
}

async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<Auth>,
    State(state): State<LiveState>,
) -> Result<(), Refused> {
    let auth = auth.map_err(|_| Refused("send auth: {token: <access token>}".into()))?;
    let principal = state.verifier.verify(&auth.token).await.map_err(|e| {
        metrics::counter!("edgewatch_live_refused_total").increment(1);
        Refused(e.to_string())
    })?;
    socket.extensions.insert(Session { token: auth.token, principal });
    Ok(())
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    metrics::gauge!("edgewatch_live_clients").increment(1);
    socket.on_disconnect(async || metrics::gauge!("edgewatch_live_clients").decrement(1));
    socket.on("subscribe", subscribe::<A>);
    socket.on("unsubscribe", unsubscribe::<A>);
    socket.on("subscribe_fleet", subscribe_fleet::<A>);
}

fn refuse<A: Adapter>(ack: AckSender<A>, error: impl std::fmt::Display) {
    ack.send(&json!({"ok": false, "error": error.to_string()})).ok();
}

/// The socket's session, with its token checked again (a token revoked since connect stops
/// working for new subscriptions).
async fn session<A: Adapter>(socket: &SocketRef<A>, state: &LiveState) -> Result<Session, String> {
    let session = socket.extensions.get::<Session>().ok_or("not signed in")?;
    state.verifier.verify(&session.token).await.map_err(|e| e.to_string())?;
    Ok(session)
}

fn device_of(request: Result<DeviceRequest, impl std::fmt::Display>) -> Result<DeviceId, String> {
    let request = request.map_err(|_| "send {device_id}".to_owned())?;
    DeviceId::parse(&request.device_id).map_err(|e| format!("device_id: {e}"))
}

async fn subscribe<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<DeviceRequest>,
    ack: AckSender<A>,
    State(state): State<LiveState>,
) {
    let device = match device_of(request) {
        Ok(device) => device,
        Err(why) => return refuse(ack, why),
    };
    let session = match session(&socket, &state).await {
        Ok(session) => session,
        Err(why) => return refuse(ack, why),
    };
    match registry::require(state.registry.as_ref(), &session.token, device).await {
        Ok(()) => {
            socket.join(device_room(device));
            ack.send(&json!({"ok": true})).ok();
        }
        Err(err) => refuse(ack, err),
    }
}

async fn unsubscribe<A: Adapter>(
    socket: SocketRef<A>,
    TryData(request): TryData<DeviceRequest>,
    ack: AckSender<A>,
) {
    match device_of(request) {
        Ok(device) => {
            socket.leave(device_room(device));
            ack.send(&json!({"ok": true})).ok();
        }
        Err(why) => refuse(ack, why),
    }
}

async fn subscribe_fleet<A: Adapter>(
    socket: SocketRef<A>,
    TryData(_): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<LiveState>,
) {
    let session = match session(&socket, &state).await {
        Ok(session) => session,
        Err(why) => return refuse(ack, why),
    };
    if session.principal.is_admin() {
        socket.join(ALL_DEVICES);
        ack.send(&json!({"ok": true})).ok();
        return;
    }
    match state.registry.visible(&session.token).await {
        Ok(devices) => {
            socket.join(devices.into_iter().map(fleet_room).collect::<Vec<_>>());
            ack.send(&json!({"ok": true})).ok();
        }
        Err(err) => refuse(ack, err),
    }
}

fn count_drops(result: Result<(), BroadcastError>) {
    match result {
        Ok(()) => {}
        Err(BroadcastError::Socket(errors)) => {
            metrics::counter!("edgewatch_live_dropped_total").increment(errors.len() as u64);
        }
        Err(err) => tracing::warn!(error = %err, "Live push failed"),
    }
}

async fn push_telemetry<A: Adapter>(io: &SocketIo<A>, batch: &Batch) {
    let Some(ns) = io.of(NAMESPACE) else { return };
    let room = device_room(batch.device_id());
    for reading in batch.readings() {
        let event = TelemetryEvent {
            device_id: batch.device_id(),
            seq: reading.seq.get(),
            ts: reading.ts,
            metrics: &reading.metrics,
        };
        count_drops(ns.clone().to(room.clone()).emit("telemetry", &event).await);
    }
}

async fn push_status<A: Adapter>(io: &SocketIo<A>, event: &StatusEvent) {
    let Some(ns) = io.of(NAMESPACE) else { return };
    let rooms = vec![device_room(event.device_id), fleet_room(event.device_id), ALL_DEVICES.into()];
    count_drops(ns.to(rooms).emit("status", event).await);
}

impl Live {
    /// Pushes every reading of `batch` to the device's subscribers.
    pub async fn telemetry(&self, batch: &Batch) {
        match self {
            Live::Local(io) => push_telemetry(io, batch).await,
            Live::Redis(io) => push_telemetry(io, batch).await,
        }
    }

    /// Pushes a status change to the device's subscribers and to the fleets that see it.
    pub async fn status(&self, event: &StatusEvent) {
        match self {
            Live::Local(io) => push_status(io, event).await,
            Live::Redis(io) => push_status(io, event).await,
        }
    }
}
