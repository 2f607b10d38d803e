//! systemd integration for `packaging/systemd/edgewatch-agent.service` (Type=notify,
//! WatchdogSec): READY=1 once the buffer is open and the tasks run, STOPPING=1 on shutdown, and a
//! watchdog ping at half the interval systemd asks for, sent only after the buffer answered, so a
//! wedged SQLite lock or a stuck runtime gets the agent restarted. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call is a no-op.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::buffer::SharedBuffer;

/// Tells systemd the agent is up, keeps its watchdog fed, and says STOPPING=1 at `shutdown`.
pub fn ready(buffer: SharedBuffer, shutdown: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    notify(sd_notify::NotifyState::Ready);
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) {
        let period = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
        tokio::spawn(watchdog(buffer, period, shutdown.clone()));
    }
    // So that a slow final flush is not taken for a hang.
    tokio::spawn(async move {
        shutdown.cancelled().await;
        notify(sd_notify::NotifyState::Stopping);
    });
}

async fn watchdog(buffer: SharedBuffer, period: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = shutdown.cancelled() => return,
        }
        match buffer.with(|b| b.stats()).await {
            Ok(_) => notify(sd_notify::NotifyState::Watchdog),
            // No ping: systemd restarts the agent when the buffer stays unusable.
            Err(err) => tracing::error!(%err, "Buffer unusable; withholding the watchdog ping"),
        }
    }
}

fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(err) = sd_notify::notify(false, &[state]) {
        tracing::warn!(%err, "Cannot notify systemd");
    }
}
