//! The agent speaks systemd's notify protocol (packaging/systemd/edgewatch-agent.service is
//! Type=notify with a watchdog): a real agent process, a notify socket of our own in place of
//! systemd's, READY=1, watchdog pings at the asked pace, STOPPING=1 on SIGTERM.

use std::{os::unix::net::UnixDatagram, process::Command, time::Duration};

use super::cloud::temp_dir;

/// Kills the agent when the test ends, passed or not.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_agent_notifies_ready_feeds_the_watchdog_and_says_stopping() {
    let dir = temp_dir();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // systemd sets WATCHDOG_PID to the service's pid: a shell learns its own and execs the agent
    // in its place, keeping the pid.
    let mut agent = Running(
        Command::new("sh")
            .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_edgewatch-agent"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["run", "--uplink", "none", "--interval", "0.5"])
            .env("NOTIFY_SOCKET", &socket_path)
            // A 400 ms watchdog: pings every 200 ms.
            .env("WATCHDOG_USEC", "400000")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let next = || {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).trim().to_owned()
    };
    assert_eq!(next(), "READY=1");
    for _ in 0..3 {
        assert_eq!(next(), "WATCHDOG=1");
    }
    let killed = Command::new("kill").args(["-TERM", &agent.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    // Pings already on their way may come first; STOPPING=1 within a few.
    let rest: Vec<String> = (0..20).map(|_| next()).take_while(|m| m != "STOPPING=1").collect();
    assert!(rest.iter().all(|m| m == "WATCHDOG=1") && rest.len() < 20, "{rest:?}");
    let status = agent.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn outside_systemd_nothing_is_sent_and_the_agent_runs() {
    let dir = temp_dir();
    let mut agent = Running(
        Command::new(env!("CARGO_BIN_EXE_edgewatch-agent"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["run", "--uplink", "none", "--interval", "0.2"])
            .env_remove("NOTIFY_SOCKET")
            .env("WATCHDOG_USEC", "100000")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited on its own");
}
