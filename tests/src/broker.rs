//! A real Kafka-protocol broker for the transport tests and benchmarks (R-BUS-1, R-BUS-2):
//! [tansu](https://crates.io/crates/tansu) as a child process on 127.0.0.1 (on a free port, or
//! inside a test network namespace), with its SQLite storage in a test directory so that it can
//! be stopped, killed and restarted on the same data. Also: the sensor running with a Kafka
//! sink, and a helper to run code inside a network namespace (for clients of a broker that
//! lives there).
//!
//! Only the tests depend on tansu; the product speaks the plain Kafka protocol. Tests call
//! [`require_broker`]: under `CI=true` a missing `tansu` binary is a failure, never a skip.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::{Netns, workspace_bin};

/// The `tansu` binary: on PATH, or in `$CARGO_HOME/bin` (where `cargo xtask setup` installs
/// it).
pub fn tansu_bin() -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
}

/// True when a broker can be started (see [`crate::require`]: a missing `tansu` fails in CI
/// with the fix, skips elsewhere).
pub fn require_broker(test: &str) -> bool {
    let problem = tansu_bin().is_none().then(|| {
        "`tansu` is not installed (run `cargo xtask setup`, which runs `cargo install tansu --features dynostore,libsql --locked`)".to_string()
    });
    crate::require(test, "broker test", problem)
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Runs `f` on a thread that entered network namespace `ns` (an `ip netns` name). Sockets
/// and threads created there (e.g. a Kafka client's) live in that namespace.
pub fn in_netns<R: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> anyhow::Result<R> {
    let path = Path::new("/run/netns").join(ns);
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let handle = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(anyhow::anyhow!(
                "setns: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    });
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("thread in netns panicked"))?
}

/// tansu running as a child process; killed on drop.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    /// Port it listens on (127.0.0.1 of its namespace).
    pub port: u16,
    /// Its working directory: storage (`tansu.db`) and log.
    pub dir: PathBuf,
    ns: Option<String>,
    starts: u32,
    /// Started with `--authentication` (SASL SCRAM required of every client).
    authentication: bool,
}

impl Broker {
    /// Starts tansu on 127.0.0.1 and a free port, storing into `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Broker> {
        let port = free_port()?;
        Self::launch(dir, port, None)
    }

    /// Starts tansu inside network namespace `ns` (on its 127.0.0.1), storing into `dir`.
    pub fn start_in(ns: &Netns, dir: &Path) -> anyhow::Result<Broker> {
        Self::launch(dir, 19092, Some(ns.name.clone()))
    }

    fn launch(dir: &Path, port: u16, ns: Option<String>) -> anyhow::Result<Broker> {
        std::fs::create_dir_all(dir)?;
        let mut b = Broker {
            child: None,
            port,
            dir: dir.to_path_buf(),
            ns,
            starts: 0,
            authentication: false,
        };
        b.spawn()?;
        Ok(b)
    }

    /// Starts tansu on 127.0.0.1 requiring SASL SCRAM-SHA-512 authentication, with one user
    /// `user`/`password` (created through tansu's CLI before authentication is switched on,
    /// as tansu's user administration itself needs an authenticated client).
    pub fn start_with_scram_user(dir: &Path, user: &str, password: &str) -> anyhow::Result<Broker> {
        let mut b = Self::start(dir)?;
        let bin = tansu_bin().context("tansu is not installed")?;
        let url = format!("tcp://127.0.0.1:{}", b.port);
        let out = b
            .command(
                &bin,
                &[
                    "user",
                    "create",
                    "--broker",
                    &url,
                    "--mechanism",
                    "scram512",
                    user,
                    password,
                ],
            )
            .output()
            .context("running tansu user create")?;
        if !out.status.success() {
            bail!(
                "tansu user create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        b.stop()?;
        b.authentication = true;
        b.spawn()?;
        Ok(b)
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        c.args(args);
        c
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = tansu_bin().context("tansu is not installed (cargo xtask setup)")?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        self.starts += 1;
        let mut args = vec![
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            // Relative to the working directory: <dir>/tansu.db survives restarts.
            "--storage-engine",
            "sqlite://tansu.db",
        ];
        if self.authentication {
            args.push("--authentication");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = self
            .command(&bin, &args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tansu")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("tansu.log")
    }

    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `host:port` for `bootstrap.servers` (valid in the broker's namespace).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Reads `topic` from the start with a fresh consumer group (in the broker's namespace),
    /// until `want` messages or `timeout`: (key, `apitap-alert-format` header, JSON payload)
    /// per message. What a SIEM's Kafka consumer of the alert topic gets.
    pub fn read_json_messages(
        &self,
        topic: &str,
        want: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<(String, String, serde_json::Value)>> {
        self.read_messages(topic, want, timeout, "apitap-alert-format")?
            .into_iter()
            .map(|(key, format, payload)| {
                let doc = serde_json::from_slice(&payload).context("message is JSON")?;
                Ok((key, format, doc))
            })
            .collect()
    }

    /// Reads `topic` from the start with a fresh consumer group (in the broker's namespace),
    /// until `want` messages or `timeout`: (key, the value of header `header` or "", payload)
    /// per message, as any Kafka client gets them.
    pub fn read_messages(
        &self,
        topic: &str,
        want: usize,
        timeout: Duration,
        header: &str,
    ) -> anyhow::Result<Vec<(String, String, Vec<u8>)>> {
        use rdkafka::Message as _;
        use rdkafka::consumer::{BaseConsumer, Consumer as _};
        use rdkafka::message::Headers as _;
        let bootstrap = self.bootstrap();
        let topic = topic.to_owned();
        let header = header.to_owned();
        let read = move || -> anyhow::Result<Vec<(String, String, Vec<u8>)>> {
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", format!("reader-{}", std::process::id()))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()?;
            consumer.subscribe(&[topic.as_str()])?;
            let mut out = Vec::new();
            let start = Instant::now();
            while out.len() < want && start.elapsed() < timeout {
                let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                    continue;
                };
                let m = m?;
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == header))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                out.push((key, value, m.payload().unwrap_or_default().to_vec()));
            }
            Ok(out)
        };
        match &self.ns {
            None => read(),
            Some(ns) => in_netns(ns, read)?,
        }
    }

    fn can_connect(&self) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let probe = move || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        match &self.ns {
            None => probe(),
            Some(ns) => in_netns(ns, probe).unwrap_or(false),
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.can_connect() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!("tansu exited with {status}: {}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!(
                    "tansu did not listen within {timeout:?}: {}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates `topic` with `partitions` partitions (tansu's CLI, which uses CreateTopics).
    pub fn create_topic(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        let bin = tansu_bin().context("tansu is not installed")?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let parts = partitions.to_string();
        let out = self
            .command(
                &bin,
                &[
                    "topic",
                    "create",
                    "--broker",
                    &url,
                    "--partitions",
                    &parts,
                    topic,
                ],
            )
            .output()
            .context("running tansu topic create")?;
        if !out.status.success() {
            bail!(
                "tansu topic create {topic} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn signal_and_wait(&mut self, sig: i32, timeout: Duration) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: signalling our own child (`ip netns exec` execs the program in place).
        unsafe { libc::kill(child.id() as i32, sig) };
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s). Its storage stays.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.signal_and_wait(libc::SIGTERM, Duration::from_secs(10))
    }

    /// Kills it (SIGKILL): a crash. Its storage stays.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.signal_and_wait(libc::SIGKILL, Duration::from_secs(5))
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            self.stop()?;
        }
        self.spawn()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// `apitap-sensor run` with a configuration written by the test (e.g. a Kafka sink), in a
/// network namespace; killed on drop.
#[derive(Debug)]
pub struct ConfiguredSensor {
    child: Option<Child>,
    ns_name: String,
    /// Where its logs go.
    pub log: PathBuf,
}

impl ConfiguredSensor {
    /// Writes `config` (TOML) into `dir` and starts the sensor in `ns`; waits until its health
    /// endpoint (which `config` must enable on [`crate::METRICS_ADDR`]) answers.
    pub fn start(ns: &Netns, config: &str, dir: &Path) -> anyhow::Result<ConfiguredSensor> {
        let bin = workspace_bin("apitap-sensor")?;
        std::fs::create_dir_all(dir)?;
        let path = dir.join("sensor.toml");
        std::fs::write(&path, config)?;
        let log = dir.join("sensor.log");
        let child = ns
            .cmd(&bin, &["run", "--config", &path.to_string_lossy()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting apitap-sensor")?;
        let mut s = ConfiguredSensor {
            child: Some(child),
            ns_name: ns.name.clone(),
            log,
        };
        crate::wait_healthy(&s.ns_name, &mut s.child, &s.log)?;
        Ok(s)
    }

    fn get(&self, path: &str) -> anyhow::Result<String> {
        crate::sensor_http_get(&self.ns_name, path)
    }

    /// Current value of metric `name` (with labels, as rendered), 0 when absent.
    pub fn metric(&self, name: &str) -> anyhow::Result<u64> {
        Ok(crate::parse_metrics(&self.get("/metrics")?)
            .into_iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| v))
    }

    /// Waits (bounded) until `f(metric value)` holds.
    pub fn wait_metric(
        &self,
        name: &str,
        timeout: Duration,
        f: impl Fn(u64) -> bool,
    ) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric(name)?;
            if f(v) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("{name} stayed at {v} for {timeout:?}: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The sensor's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it with SIGTERM (it delivers or spools what it holds) and waits.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let log = self.log.clone();
        crate::stop_child(
            "apitap-sensor",
            self.child.take(),
            libc::SIGTERM,
            Duration::from_secs(30),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        )
    }
}

impl Drop for ConfiguredSensor {
    fn drop(&mut self) {
        crate::kill_child(self.child.take());
    }
}

/// A sensor configuration capturing `SERVER_PORT` on `interface` with metrics on
/// `METRICS_ADDR` and a Kafka sink to `broker` spooling into `spool`.
pub fn kafka_sensor_config(
    id: &str,
    interface: &str,
    broker: &Broker,
    spool: &Path,
    queue_max_events: u32,
) -> String {
    format!(
        r#"[sensor]
id = "{id}"
[capture]
interfaces = ["{interface}"]
ports = [{port}]
[metrics]
listen = "{metrics}"
[sink]
kind = "kafka"
[kafka]
brokers = ["{}"]
[kafka.producer]
linger_ms = 5
stall_timeout_ms = 3000
queue_max_events = {queue_max_events}
close_timeout_ms = 10000
[kafka.spool]
dir = "{}"
segment_bytes = 1048576
max_bytes = 67108864
"#,
        broker.bootstrap(),
        spool.display(),
        port = crate::SERVER_PORT,
        metrics = crate::METRICS_ADDR,
    )
}

/// The `[kafka]` table of an analyzer reading `topic` as `group`. The session timeout is short
/// so that a killed member leaves the group quickly (one member at a time: see
/// [`steady_group`] for groups of several).
pub fn analyzer_kafka_section(bootstrap: &str, topic: &str, group: &str) -> String {
    format!(
        r#"[kafka]
brokers = ["{bootstrap}"]
events_topic = "{topic}"
alerts_topic = "{topic}.alerts"
[kafka.consumer]
group_id = "{group}"
commit_interval_ms = 200
[kafka.librdkafka_options]
"session.timeout.ms" = 6000
"#
    )
}

/// `config` (with an [`analyzer_kafka_section`]) for a group of several members on tansu:
/// 15 s sessions, 1 s heartbeats. tansu counts only heartbeats as a member's contact and
/// holds each follower's JoinGroup 3 s, and librdkafka does not heartbeat while it re-joins:
/// a join round takes the last heartbeat interval plus ≥ 3 s, and 6 s sessions kept two
/// groups per process rebalancing for minutes (seen in CI; docs/scale-out.md "The rebalance
/// storm"). A killed member is dropped 15 s after its last heartbeat.
pub fn steady_group(config: &str) -> String {
    let out = config.replace(
        "\"session.timeout.ms\" = 6000\n",
        "\"session.timeout.ms\" = 15000\n\"heartbeat.interval.ms\" = 1000\n",
    );
    assert_ne!(out, config, "no [kafka] session timeout to replace");
    out
}

/// Body of `GET path` on `addr` (HTTP/1.1, one request, connection closed by the server).
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    Ok(body.to_owned())
}
