//! A `kaji up --runtime none` process for tests that kill and restart the
//! server on one data dir (crash and watch-continuity tests).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `kaji up` this test started, SIGKILLed (by its PID) when dropped.
pub struct Server {
    child: Option<Child>,
    /// Its kubeconfig.
    pub kubeconfig: PathBuf,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Server {
    /// Starts `kaji up --runtime none` on `dir` and waits (bounded) for its
    /// ready line; stderr goes to `log`.
    pub fn start(dir: &Path, log: PathBuf) -> Server {
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kaji"))
            .args(["up", "--data-dir"])
            .arg(dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log",
                "warn",
                "--runtime",
                "none",
            ])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn kaji up");
        let stdout = child.stdout.take().expect("stdout");
        let mut server = Server {
            child: Some(child),
            kubeconfig: dir.join("kubeconfig"),
            log,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = false;
            // Keeps draining stdout so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !ready && line.starts_with("kaji is ready at ") {
                    ready = true;
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            server.kill9();
            panic!(
                "kaji up did not report ready on its data dir; log:\n{}",
                server.log_text()
            );
        }
        server
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL by PID, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM by PID and wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kaji up did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
