//! The real `sesgate serve` binary as a child process, for the tests that need what only the
//! process has (its log output, signals, a restart): it runs on a config written to
//! `dir/sesgate.toml`, its stdout and stderr go to `dir/serve.log`, and it is killed when
//! dropped so that a failing test leaves no process behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Client, connect_from, copy_guide_policies};

/// How long a start may take; generous because the test machine is loaded and a restart after
/// SIGKILL recovers a spool first.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `wait_for_log` waits for a line.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// The config most process tests use: host name `gw.test` and one plaintext listener on `port`
/// that allows AUTH without TLS, followed by `extra` (more TOML).
pub fn plaintext_config(port: u16, extra: &str) -> String {
    format!(
        "hostname = \"gw.test\"\n[[listener]]\naddress = \"127.0.0.1:{port}\"\ntls = \"none\"\nallow_plaintext_auth = true\n{extra}"
    )
}

/// A new, empty directory `sesgate-{name}-{pid}` in the temporary directory, with the guide's
/// policies in `policies/` and `iam_toml` as `policies/iam.toml`.
pub fn policy_dir(name: &str, iam_toml: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sesgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    copy_guide_policies(&dir.join("policies"));
    std::fs::write(dir.join("policies/iam.toml"), iam_toml).unwrap();
    dir
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct ServeProcess {
    child: Child,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    rust_log: Option<String>,
    env: Vec<(String, String)>,
    remove_dir: bool,
}

impl ServeProcess {
    /// Serves `plaintext_config` with `extra_toml` on a free port.
    pub fn start(dir: &Path, extra_toml: &str) -> ServeProcess {
        Self::start_with(dir, &[], None, |port| plaintext_config(port, extra_toml))
    }

    /// `start` with these environment variables set for the process.
    pub fn start_with_env(dir: &Path, extra_toml: &str, env: &[(&str, &str)]) -> ServeProcess {
        let env = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Self::launch(dir, &[], None, env, |port| {
            plaintext_config(port, extra_toml)
        })
    }

    /// Writes `config(port)` for a free port to `dir/sesgate.toml` and runs `sesgate serve
    /// --config dir/sesgate.toml args...` with `RUST_LOG` set to `rust_log` (unset when
    /// `None`), until its listener on that port accepts connections.
    pub fn start_with(
        dir: &Path,
        args: &[&str],
        rust_log: Option<&str>,
        config: impl FnOnce(u16) -> String,
    ) -> ServeProcess {
        Self::launch(dir, args, rust_log, Vec::new(), config)
    }

    fn launch(
        dir: &Path,
        args: &[&str],
        rust_log: Option<&str>,
        env: Vec<(String, String)>,
        config: impl FnOnce(u16) -> String,
    ) -> ServeProcess {
        let port = free_port();
        std::fs::write(dir.join("sesgate.toml"), config(port)).unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut serve = ServeProcess {
            child: Self::spawn(dir, args, rust_log, &env, log),
            port,
            dir: dir.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            rust_log: rust_log.map(str::to_owned),
            env,
            remove_dir: false,
        };
        serve.wait_until_listening();
        serve
    }

    fn spawn(
        dir: &Path,
        args: &[&str],
        rust_log: Option<&str>,
        env: &[(String, String)],
        log: std::fs::File,
    ) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sesgate"));
        command
            .args(["serve", "--config"])
            .arg(dir.join("sesgate.toml"))
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        command.spawn().expect("sesgate starts")
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("serve exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL) and starts it again on the same config and port; the log
    /// is appended to.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("serve.log"))
            .unwrap();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.child = Self::spawn(&self.dir, &args, self.rust_log.as_deref(), &self.env, log);
        self.wait_until_listening();
    }

    /// Removes `dir` too when dropped.
    pub fn removing_dir(mut self) -> ServeProcess {
        self.remove_dir = true;
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many of the process's threads are named `name` (`/proc/PID/task/*/comm`).
    pub fn threads_named(&self, name: &str) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim_end() == name)
            .count()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// stdout and stderr together, as far as written.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("serve.log")).unwrap_or_default())
            .into_owned()
    }

    /// Waits until `text` appears `count` times in the log.
    pub async fn wait_for_log(&self, text: &str, count: usize) {
        let deadline = Instant::now() + LOG_TIMEOUT;
        while self.log().matches(text).count() < count {
            assert!(
                Instant::now() < deadline,
                "{text:?} did not appear {count} times: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends the signal `name` (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }

    /// SIGTERM, then its exit status (SIGKILL if it has not exited within the start timeout).
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        panic!("serve did not stop on SIGTERM: {}", self.log());
    }

    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client past the greeting (`220 gw.test`) and `EHLO`.
    pub async fn client(&self) -> Client {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        Self::greeted(stream).await
    }

    /// As `client`, from the loopback address `source`.
    pub async fn client_from(&self, source: &str) -> Client {
        Self::greeted(connect_from(source, self.port).await).await
    }

    async fn greeted(stream: tokio::net::TcpStream) -> Client {
        let mut client = Client::new(Box::new(stream), Vec::new());
        assert!(client.reply().await.starts_with("220 gw.test"));
        assert!(client.command("EHLO client.test").await.starts_with("250"));
        client
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
