//! `--metrics ADDR`: the agent's own counters for Prometheus, `GET /metrics` in the text format.
//!
//! Why a hand-written responder: the agent has no HTTP server otherwise, and a server stack would
//! cost a good part of the binary's 8 MB budget for one route. The scrape is answered from the
//! buffer's counters (the same ones `edgewatch-agent status` shows), so a fleet's buffer depth,
//! drops, quarantine and link state can be alerted on. It listens only where it is told (use a
//! loopback or LAN address); requests are read with a size cap and a timeout, anything but
//! `GET /metrics` gets a 404, and a slow or broken client never touches the collector or uplink.

use std::{fmt::Write as _, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

use crate::buffer::{SharedBuffer, Stats};

/// Largest request head read; a scrape's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers scrapes on `listener` (bound at start, so a bad address fails the start) until
/// `shutdown`.
pub async fn serve(listener: TcpListener, buffer: SharedBuffer, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(%err, "Cannot accept a metrics scrape");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let buffer = buffer.clone();
        tokio::spawn(async move {
            if let Err(err) = answer(stream, &buffer).await {
                tracing::debug!(%err, "A metrics scrape failed");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, buffer: &SharedBuffer) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", "").await;
        }
        let read = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(0)) | Err(_) => return Ok(()),
            Ok(Ok(n)) => head.extend_from_slice(&chunk[..n]),
            Ok(Err(err)) => return Err(err),
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if method != b"GET" || path.split(|b| *b == b'?').next() != Some(b"/metrics") {
        return respond(&mut stream, "404 Not Found", "only GET /metrics is served here\n").await;
    }
    match buffer.with(|b| b.stats()).await {
        Ok(stats) => respond(&mut stream, "200 OK", &render(&stats)).await,
        Err(err) => {
            respond(&mut stream, "503 Service Unavailable", &format!("buffer: {err}\n")).await
        }
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The exposition text of `stats`.
pub fn render(stats: &Stats) -> String {
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let seconds = |t: Option<edgewatch_protocol::Timestamp>| t.map(|t| t.as_millis() as f64 / 1e3);
    metric(
        "edgewatch_agent_info",
        "gauge",
        "The agent's version.",
        &[(concat!("{version=\"", env!("CARGO_PKG_VERSION"), "\"}"), 1.0)],
    );
    metric(
        "edgewatch_agent_pending_readings",
        "gauge",
        "Readings in the buffer, not yet acknowledged by the cloud.",
        &[("", stats.pending_readings as f64)],
    );
    metric(
        "edgewatch_agent_pending_bytes",
        "gauge",
        "Bytes of the pending readings' JSON.",
        &[("", stats.pending_bytes as f64)],
    );
    if let Some(oldest) = seconds(stats.oldest_pending) {
        metric(
            "edgewatch_agent_oldest_pending_timestamp_seconds",
            "gauge",
            "Time of the oldest pending reading (alert on its age).",
            &[("", oldest)],
        );
    }
    metric(
        "edgewatch_agent_uploaded_readings_total",
        "counter",
        "Readings the cloud acknowledged.",
        &[("", stats.uploaded_readings as f64)],
    );
    metric(
        "edgewatch_agent_dropped_readings_total",
        "counter",
        "Readings dropped because the buffer was full, by policy.",
        &[
            ("{policy=\"oldest\"}", stats.dropped_oldest as f64),
            ("{policy=\"newest\"}", stats.dropped_newest as f64),
        ],
    );
    metric(
        "edgewatch_agent_quarantined_readings",
        "gauge",
        "Readings in batches the cloud refused (kept in quarantine).",
        &[("", stats.quarantined_readings as f64)],
    );
    metric(
        "edgewatch_agent_quarantine_evicted_total",
        "counter",
        "Quarantined batches evicted to keep the quarantine bounded.",
        &[("", stats.quarantine_evicted as f64)],
    );
    if let Some(last) = seconds(stats.last_upload) {
        metric(
            "edgewatch_agent_last_upload_timestamp_seconds",
            "gauge",
            "Time of the last acknowledged upload.",
            &[("", last)],
        );
    }
    let up = stats.link_state.as_deref() == Some("up");
    metric(
        "edgewatch_agent_link_up",
        "gauge",
        "1 when the last upload attempt succeeded.",
        &[("", if up { 1.0 } else { 0.0 })],
    );
    metric(
        "edgewatch_agent_config_version",
        "gauge",
        "Version of the remote config in force (0: none).",
        &[("", stats.config_version.unwrap_or(0) as f64)],
    );
    out
}
