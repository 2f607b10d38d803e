//! The authorising front: the only listener clients can reach. rumqttd sits behind it on a
//! loopback port with one internal account, so every byte a client sends passes here first.
//!
//! Per connection: read the CONNECT, authenticate it (devices must use their id as client id),
//! check the will topic, then open a connection to rumqttd with the CONNECT rewritten to the
//! internal account and relay packets both ways. Client-to-broker PUBLISH topics and SUBSCRIBE
//! filters are checked against the client's [`Permissions`]: a refused SUBSCRIBE gets a SUBACK
//! with failure codes (MQTT 3.1.1 §3.9.3); a refused PUBLISH closes the connection, so a device
//! never mistakes a dropped message for a delivered one (its agent keeps the batch and the
//! refusal shows up in logs and `edgewatch_broker_denied_total`). Device credentials are checked
//! again every `reauth_interval`; a revoked device is disconnected.
//!
//! A device's PUBLISH on its own telemetry or events topic does not go to rumqttd: with an
//! [`Ingest`] port configured, the front hands it over and answers PUBACK itself once the port
//! says it is on the bus (or refused for good); if the port fails, no PUBACK, the connection is
//! closed and the device sends the batch again after reconnecting. Per connection the front
//! reads packets one at a time, so a device's messages reach the port in the order sent, one at
//! a time, and PUBACKs leave in PUBLISH order (MQTT 3.1.1 §4.6): before answering, the front
//! waits until rumqttd acknowledged every earlier QoS 1 PUBLISH it relayed (a status message),
//! and the writer takes the front's PUBACK before any later packet from rumqttd.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use edgewatch_protocol::DeviceId;
use metrics::{Counter, counter, gauge, histogram};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore, mpsc},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::{
    acl::{Identity, Permissions},
    auth::{AuthError, Authenticator, Login},
    ingest::{Ingest, IngestError, IngestKind, Outcome, Publication},
    packet::{self, Connect, ConnectReturn, Frame, PacketError},
};

/// What every connection of one broker shares.
pub(crate) struct Front {
    pub auth: Arc<dyn Authenticator>,
    /// rumqttd's loopback listener and the account it accepts.
    pub upstream: SocketAddr,
    pub internal_user: String,
    pub internal_password: String,
    pub max_packet_bytes: usize,
    pub connect_timeout: Duration,
    pub reauth_interval: Duration,
    pub slots: Arc<Semaphore>,
    /// Where devices' telemetry and events go; `None`: to rumqttd like any message (it then
    /// acknowledges from memory).
    pub ingest: Option<Arc<dyn Ingest>>,
    /// How long one message may take the port (bus confirm included) before the connection is
    /// closed unacknowledged.
    pub ingest_timeout: Duration,
}

/// Accepts connections on `listener` until `shutdown`; each runs in its own task.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    front: Arc<Front>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(%err, "Cannot accept an MQTT connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(stream, peer, &front, &shutdown).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(front.connect_timeout, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => connection(stream, peer, &front, &shutdown).await,
                        Ok(Err(err)) => {
                            counter!("edgewatch_broker_connects_total", "result" => "tls_failed")
                                .increment(1);
                            tracing::debug!(%peer, %err, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Why a connection ended early; the label of `edgewatch_broker_connects_total`.
fn refuse_label(code: ConnectReturn) -> &'static str {
    match code {
        ConnectReturn::Accepted => "accepted",
        ConnectReturn::UnacceptableProtocol => "bad_protocol",
        ConnectReturn::IdentifierRejected => "identifier_rejected",
        ConnectReturn::ServerUnavailable => "unavailable",
        ConnectReturn::BadCredentials => "bad_credentials",
        ConnectReturn::NotAuthorized => "not_authorized",
    }
}

async fn connection<S>(mut stream: S, peer: SocketAddr, front: &Front, shutdown: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut buf = BytesMut::with_capacity(1024);
    let first = tokio::select! {
        () = shutdown.cancelled() => return,
        first = tokio::time::timeout(front.connect_timeout, read_frame(&mut stream, &mut buf, front.max_packet_bytes)) => first,
    };
    let frame = match first {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return,
        Ok(Err(err)) => {
            tracing::debug!(%peer, %err, "Unreadable first packet");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "No CONNECT in time");
            return;
        }
    };
    let connect = match Connect::decode(&frame) {
        Ok(connect) => connect,
        Err(err) => {
            tracing::info!(%peer, %err, "Refused a connection");
            if matches!(err, PacketError::Protocol(..)) {
                refuse(&mut stream, ConnectReturn::UnacceptableProtocol).await;
            }
            return;
        }
    };
    let Ok(_slot) = front.slots.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "Connection limit reached; refusing a client");
        refuse(&mut stream, ConnectReturn::ServerUnavailable).await;
        return;
    };
    let (connect, identity, login) = match admit(connect, front).await {
        Ok(admitted) => admitted,
        Err(code) => {
            tracing::info!(%peer, reason = refuse_label(code), "Refused a connection");
            refuse(&mut stream, code).await;
            return;
        }
    };
    let upstream = match TcpStream::connect(front.upstream).await {
        Ok(upstream) => upstream,
        Err(err) => {
            tracing::error!(%err, "Cannot reach the embedded rumqttd");
            refuse(&mut stream, ConnectReturn::ServerUnavailable).await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    counter!("edgewatch_broker_connects_total", "result" => "accepted").increment(1);
    let connected = gauge!("edgewatch_broker_connections");
    connected.increment(1.0);
    tracing::debug!(%peer, client_id = %connect.client_id, kind = identity.kind(), "Client connected");
    let ended = relay(stream, buf, upstream, connect, &identity, &login, front, shutdown).await;
    connected.decrement(1.0);
    match ended {
        Ok(()) => tracing::debug!(%peer, "Client disconnected"),
        Err(reason) => tracing::info!(%peer, %reason, "Closed a client connection"),
    }
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, code: ConnectReturn) {
    let label = refuse_label(code);
    counter!("edgewatch_broker_connects_total", "result" => label).increment(1);
    if matches!(
        code,
        ConnectReturn::BadCredentials
            | ConnectReturn::NotAuthorized
            | ConnectReturn::IdentifierRejected
    ) {
        counter!("edgewatch_broker_auth_failures_total", "reason" => label).increment(1);
    }
    let _ = stream.write_all(&packet::connack(code)).await;
    let _ = stream.shutdown().await;
}

/// Authenticates a CONNECT; returns it rewritten for rumqttd, with the client's identity.
async fn admit(
    mut connect: Connect,
    front: &Front,
) -> Result<(Connect, Identity, Login), ConnectReturn> {
    let (Some(username), Some(password)) = (connect.username.take(), connect.password.take())
    else {
        return Err(ConnectReturn::NotAuthorized);
    };
    let password =
        String::from_utf8(password.to_vec()).map_err(|_| ConnectReturn::BadCredentials)?;
    let login = Login { client_id: connect.client_id.clone(), username, password };
    let identity = match front.auth.authenticate(&login).await {
        Ok(identity) => identity,
        Err(AuthError::UnknownUser | AuthError::Denied) => {
            return Err(ConnectReturn::BadCredentials);
        }
        Err(AuthError::Unavailable(cause)) => {
            tracing::warn!(%cause, "Cannot check a login");
            return Err(ConnectReturn::ServerUnavailable);
        }
    };
    if let Identity::Device(id) = &identity {
        // A device's session is its own: the client id must be its id, so no one else can
        // take over (or be handed) its persistent session.
        if connect.client_id != id.to_string() {
            return Err(ConnectReturn::IdentifierRejected);
        }
    }
    if connect.client_id.is_empty() {
        if !connect.clean_session {
            return Err(ConnectReturn::IdentifierRejected);
        }
        connect.client_id = format!("edgewatch-{}", uuid_like());
    }
    let permissions = identity.permissions();
    if let Some(will) = &connect.will
        && !permissions.may_publish(&will.topic)
    {
        counter!("edgewatch_broker_denied_total", "kind" => "will").increment(1);
        return Err(ConnectReturn::NotAuthorized);
    }
    connect.username = Some(front.internal_user.clone());
    connect.password = Some(Bytes::from(front.internal_password.clone()));
    Ok((connect, identity, login))
}

fn uuid_like() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Reads the first packet (a CONNECT) into `buf`; `None` on a clean end of stream.
async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Frame>, PacketError> {
    loop {
        // Anything but a CONNECT first is not an MQTT client: no need to wait for more.
        if buf.first().is_some_and(|b| b >> 4 != packet::CONNECT) {
            return Err(PacketError::NotConnect);
        }
        if let Some(frame) = packet::next_frame(buf, max)? {
            return Ok(Some(frame));
        }
        buf.reserve(1024);
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Why a relayed connection was closed by the front.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("publish to `{0}` is not allowed")]
    PublishDenied(String),
    #[error("the credential is no longer valid")]
    Revoked,
    #[error("{0}")]
    Protocol(#[from] PacketError),
    #[error("a second CONNECT")]
    SecondConnect,
    #[error("the broker is shutting down")]
    Shutdown,
    #[error("the embedded broker closed the connection")]
    Upstream,
    #[error("a {0} message was not taken ({1}); left unacknowledged")]
    NotIngested(IngestKind, String),
    #[error("a {0} message at QoS 2 (telemetry and events are QoS 1)")]
    IngestQos2(IngestKind),
    #[error("rumqttd did not acknowledge an earlier message in time")]
    UpstreamAckLate,
}

#[allow(clippy::too_many_arguments)]
async fn relay<S>(
    client: S,
    mut client_buf: BytesMut,
    upstream: TcpStream,
    connect: Connect,
    identity: &Identity,
    login: &Login,
    front: &Front,
    shutdown: &CancellationToken,
) -> Result<(), Closed>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut client_rx, client_tx) = tokio::io::split(client);
    let (mut up_rx, mut up_tx) = upstream.into_split();
    let permissions = identity.permissions();
    let messages_in = counter!("edgewatch_broker_messages_in_total");
    let messages_out = counter!("edgewatch_broker_messages_out_total");
    // SUBACKs and PUBACKs the front answers itself go through the writer task, between whole
    // packets.
    let (inject_tx, inject_rx) = mpsc::channel::<Bytes>(8);
    let unacked = Unacked::default();
    let ingest = match (identity, &front.ingest) {
        (Identity::Device(id), Some(port)) => Some(IngestTo {
            device: *id,
            port: port.as_ref(),
            secret: &login.password,
            timeout: front.ingest_timeout,
        }),
        _ => None,
    };

    up_tx.write_all(&connect.encode()).await.map_err(|_| Closed::Upstream)?;

    let inbound = async {
        loop {
            let mut out = BytesMut::new();
            let mut disconnect = false;
            while let Some(frame) = packet::next_frame(&mut client_buf, front.max_packet_bytes)? {
                if !check(&frame, &permissions, &inject_tx, &messages_in).await? {
                    continue;
                }
                if let Some(to) = &ingest
                    && let Some(kind) = to.kind_of(&frame)?
                {
                    // Everything before it goes first, so rumqttd's acks can be waited for.
                    if !out.is_empty() {
                        up_tx.write_all(&out).await.map_err(|_| Closed::Upstream)?;
                        out.clear();
                    }
                    to.ingest(&frame, kind, &unacked, &inject_tx).await?;
                    continue;
                }
                if frame.kind() == packet::PUBLISH && frame.qos() == 1 {
                    unacked.relayed();
                }
                out.extend_from_slice(&frame.bytes);
                disconnect |= frame.kind() == packet::DISCONNECT;
            }
            if !out.is_empty() && up_tx.write_all(&out).await.is_err() {
                return Err(Closed::Upstream);
            }
            if disconnect {
                return Ok(Ending::Disconnect);
            }
            // Small: an idle connection keeps this allocated; a busy one reads again at once.
            client_buf.reserve(2048);
            match client_rx.read_buf(&mut client_buf).await {
                // The client went away: dropping the upstream half without a DISCONNECT makes
                // rumqttd publish the will, as a vanished client deserves.
                Ok(0) | Err(_) => return Ok(Ending::Vanished),
                Ok(_) => {}
            }
        }
    };
    let ended = {
        let outbound = outbound(&mut up_rx, client_tx, inject_rx, front, &messages_out, &unacked);
        let reauth = reauth(identity, login, front);
        tokio::select! {
            ended = inbound => ended,
            ended = outbound => ended.map(|()| Ending::Vanished),
            ended = reauth => ended.map(|()| Ending::Vanished),
            () = shutdown.cancelled() => Err(Closed::Shutdown),
        }
    }?;
    if ended == Ending::Disconnect {
        // rumqttd frees a connection's id when it reads DISCONNECT and frees it again when the
        // socket closes; if a new client got the id in between, the second free drops that
        // client. Once the router has let go it closes the socket itself and sends nothing more,
        // so wait for that (bounded) before closing our side.
        let mut rest = [0u8; 512];
        let _ = tokio::time::timeout(DISCONNECT_GRACE, async {
            while matches!(up_rx.read(&mut rest).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    Ok(())
}

/// How a relayed connection ended from the client's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client sent DISCONNECT: rumqttd drops the will.
    Disconnect,
    /// The client closed the socket, or the front ended a connection that rumqttd still holds.
    Vanished,
}

/// How long a DISCONNECT waits for rumqttd to close its side of the connection.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

async fn check(
    frame: &Frame,
    permissions: &Permissions,
    inject: &mpsc::Sender<Bytes>,
    messages_in: &Counter,
) -> Result<bool, Closed> {
    match frame.kind() {
        packet::PUBLISH => {
            let topic = packet::publish_topic(frame)?;
            if !permissions.may_publish(topic) {
                counter!("edgewatch_broker_denied_total", "kind" => "publish").increment(1);
                return Err(Closed::PublishDenied(topic.to_owned()));
            }
            messages_in.increment(1);
        }
        packet::SUBSCRIBE => {
            let (pkid, filters) = packet::subscribe_filters(frame)?;
            if let Some((denied, _)) = filters.iter().find(|(f, _)| !permissions.may_subscribe(f)) {
                tracing::info!(filter = %denied, "Refused a subscription");
                counter!("edgewatch_broker_denied_total", "kind" => "subscribe").increment(1);
                let _ = inject.send(packet::suback_refused(pkid, filters.len())).await;
                // rumqttd never sees the refused SUBSCRIBE.
                return Ok(false);
            }
        }
        packet::CONNECT => return Err(Closed::SecondConnect),
        _ => {}
    }
    Ok(true)
}

async fn outbound<W: AsyncWrite + Unpin>(
    up_rx: &mut tokio::net::tcp::OwnedReadHalf,
    mut client_tx: W,
    mut inject: mpsc::Receiver<Bytes>,
    front: &Front,
    messages_out: &Counter,
    unacked: &Unacked,
) -> Result<(), Closed> {
    let mut buf = BytesMut::with_capacity(2048);
    // rumqttd may send packets larger than a client's (a retained batch): allow twice the limit.
    let max = front.max_packet_bytes.saturating_mul(2);
    loop {
        let mut out = BytesMut::new();
        let mut pubacks = 0;
        while let Some(frame) = packet::next_frame(&mut buf, max)? {
            match frame.kind() {
                packet::PUBLISH => messages_out.increment(1),
                packet::PUBACK => pubacks += 1,
                _ => {}
            }
            out.extend_from_slice(&frame.bytes);
        }
        if !out.is_empty() && client_tx.write_all(&out).await.is_err() {
            return Ok(());
        }
        unacked.acked(pubacks);
        buf.reserve(2048);
        tokio::select! {
            // The front's own answers first: a PUBACK it queued must leave before rumqttd's
            // answer to anything the client sent after that PUBLISH.
            biased;
            Some(bytes) = inject.recv() => {
                if client_tx.write_all(&bytes).await.is_err() {
                    return Ok(());
                }
            }
            read = up_rx.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = client_tx.shutdown().await;
                    return Err(Closed::Upstream);
                }
                Ok(_) => {}
            },
        }
    }
}

/// QoS 1 PUBLISHes relayed to rumqttd whose PUBACK has not reached the client yet. rumqttd
/// acknowledges in order, so a count is enough.
#[derive(Default)]
struct Unacked {
    count: AtomicUsize,
    changed: Notify,
}

impl Unacked {
    fn relayed(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// `n` PUBACKs from rumqttd were written to the client.
    fn acked(&self, n: usize) {
        if n == 0 {
            return;
        }
        let _ = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| Some(c.saturating_sub(n)));
        self.changed.notify_waiters();
    }

    /// Waits until every relayed QoS 1 PUBLISH is acknowledged.
    async fn drained(&self) {
        loop {
            // Registered before the check, so an `acked` in between is not missed.
            let changed = self.changed.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            changed.await;
        }
    }
}

/// A device connection's way to the ingest port.
struct IngestTo<'a> {
    device: DeviceId,
    port: &'a dyn Ingest,
    secret: &'a str,
    timeout: Duration,
}

impl IngestTo<'_> {
    /// The ingest kind of an (authorised) PUBLISH, if it is one.
    fn kind_of(&self, frame: &Frame) -> Result<Option<IngestKind>, Closed> {
        if frame.kind() != packet::PUBLISH {
            return Ok(None);
        }
        Ok(IngestKind::of_topic(packet::publish_topic(frame)?, self.device))
    }

    /// Hands one message to the port; PUBACKs it (QoS 1) once the port took it or refused it for
    /// good. An error closes the connection with the message unacknowledged.
    async fn ingest(
        &self,
        frame: &Frame,
        kind: IngestKind,
        unacked: &Unacked,
        inject: &mpsc::Sender<Bytes>,
    ) -> Result<(), Closed> {
        let parts = packet::publish_parts(frame)?;
        if parts.qos == 2 {
            return Err(Closed::IngestQos2(kind));
        }
        let publication = Publication {
            device: self.device,
            kind,
            payload: parts.payload,
            secret: self.secret.to_owned(),
        };
        let started = Instant::now();
        let taken = tokio::time::timeout(self.timeout, self.port.accept(publication)).await;
        histogram!("edgewatch_broker_ingest_seconds", "kind" => kind.as_str())
            .record(started.elapsed().as_secs_f64());
        let failed = |cause: String| {
            counter!("edgewatch_broker_ingest_total", "kind" => kind.as_str(), "result" => "failed")
                .increment(1);
            Closed::NotIngested(kind, cause)
        };
        match taken {
            Err(_) => return Err(failed(format!("no answer within {:?}", self.timeout))),
            // Denied: the periodic re-check ends the session for good; until then, not acked.
            Ok(Err(err @ (IngestError::Denied | IngestError::Unavailable(_)))) => {
                return Err(failed(err.to_string()));
            }
            Ok(Ok(Outcome::Accepted)) => {
                counter!("edgewatch_broker_ingest_total", "kind" => kind.as_str(), "result" => "accepted")
                    .increment(1);
            }
            Ok(Ok(Outcome::Refused(reason))) => {
                counter!("edgewatch_broker_ingest_total", "kind" => kind.as_str(), "result" => "refused")
                    .increment(1);
                tracing::warn!(device_id = %self.device, %kind, reason, "Dropped a message the devices service refused; acknowledging it");
            }
        }
        let Some(pkid) = parts.pkid else { return Ok(()) };
        tokio::time::timeout(self.timeout, unacked.drained())
            .await
            .map_err(|_| Closed::UpstreamAckLate)?;
        inject.send(packet::puback(pkid)).await.map_err(|_| Closed::Upstream)
    }
}

/// For devices: checks the credential again every `reauth_interval`; ends when it is revoked.
/// Accounts come from the configuration and do not change while the broker runs.
async fn reauth(identity: &Identity, login: &Login, front: &Front) -> Result<(), Closed> {
    let Identity::Device(_) = identity else {
        return std::future::pending().await;
    };
    let mut every = tokio::time::interval(front.reauth_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        match front.auth.authenticate(login).await {
            Ok(_) => {}
            Err(AuthError::Denied | AuthError::UnknownUser) => {
                counter!("edgewatch_broker_revoked_total").increment(1);
                return Err(Closed::Revoked);
            }
            // The devices service being down is no reason to drop devices that were valid.
            Err(AuthError::Unavailable(cause)) => {
                tracing::warn!(%cause, "Cannot re-check a device credential; keeping it");
            }
        }
    }
}
