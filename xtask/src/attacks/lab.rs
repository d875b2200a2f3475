//! The lab: network namespaces, the test API server, the sensor, background users, and the
//! word lists and accounts the tools use.

use super::*;

/// A small deterministic generator (splitmix64) for word lists and schedules.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// One account of the server (from `server.py --dump-users`).
#[derive(Clone)]
pub(crate) struct Account {
    pub(crate) id: u64,
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) phone: String,
}

pub(crate) fn accounts() -> anyhow::Result<Vec<Account>> {
    let out = Command::new("python3")
        .args([
            &testapi("server.py"),
            "--dump-users",
            "--seed",
            &SEED.to_string(),
            "--users",
            &USERS.to_string(),
        ])
        .output()
        .context("running server.py --dump-users")?;
    if !out.status.success() {
        bail!(
            "server.py --dump-users: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("parsing the accounts")?;
    let list = v.as_array().context("accounts: not a list")?;
    list.iter()
        .map(|u| {
            let s = |k: &str| {
                u.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .with_context(|| format!("account without {k}"))
            };
            Ok(Account {
                id: u.get("id").and_then(Value::as_u64).context("account id")?,
                username: s("username")?,
                password: s("password")?,
                phone: s("phone")?,
            })
        })
        .collect()
}

/// Leak-style passwords that are not the accounts' own (most stuffing attempts fail).
pub(crate) const LEAKED: &[&str] = &[
    "Aa123456",
    "woaini1314",
    "5201314",
    "qwe123",
    "zxcvbnm",
    "1qaz2wsx",
    "a123456789",
    "Passw0rd",
    "iloveyou1",
    "88888888",
    "147258369",
    "asd123456",
    "qq123456",
    "abc@123",
    "Huawei@123",
    "Zz123456",
];

/// Stuffing list: `n` (username, password) pairs, each username once; about 75 % real
/// accounts (ids ≥ 60, not the benign sessions' users), the rest unknown; `hits` real
/// accounts carry their real password (password reuse).
pub(crate) fn combo(
    accounts: &[Account],
    seed: u64,
    n: usize,
    hits: usize,
    fake: &str,
) -> Vec<(String, String)> {
    let mut rng = Rng(seed);
    let mut pool: Vec<&Account> = accounts.iter().filter(|a| a.id >= 60).collect();
    rng.shuffle(&mut pool);
    let real = n * 3 / 4;
    let mut out: Vec<(String, String)> = pool
        .iter()
        .take(real)
        .enumerate()
        .map(|(i, a)| {
            let pw = if i < hits {
                a.password.clone()
            } else {
                LEAKED[rng.below(LEAKED.len())].to_owned()
            };
            (a.username.clone(), pw)
        })
        .collect();
    for i in 0..n - real {
        out.push((
            format!("{fake}{}", 1000 + i * 37 % 9000),
            LEAKED[rng.below(LEAKED.len())].to_owned(),
        ));
    }
    rng.shuffle(&mut out);
    out
}

/// The first `n` entries of John the Ripper's password list (Debian `john-data`).
pub(crate) fn john_passwords(n: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string("/usr/share/john/password.lst")
        .context("reading /usr/share/john/password.lst (apt-get install john-data)")?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with("#!comment") && !l.is_empty())
        .take(n)
        .map(str::to_owned)
        .collect())
}

pub(crate) fn write_lines(
    path: &Path,
    lines: impl IntoIterator<Item = String>,
) -> anyhow::Result<()> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Shell-quoted command line (what the manifest records).
pub(crate) fn shell_line(program: &str, args: &[String]) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
        {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Kills a child we started (by its pid) and reaps it.
pub(crate) fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `sig` to a child we started and waits up to `timeout`; kills it after that.
pub(crate) fn stop_child(child: &mut Child, sig: i32, timeout: Duration) -> anyhow::Result<()> {
    // SAFETY: signalling our own child (ip netns exec execs in place).
    unsafe { libc::kill(child.id() as i32, sig) };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_child(child);
    bail!("process {} did not stop within {timeout:?}", child.id())
}

/// Runs `program args` in namespace `ns` (cwd: `dir`), bounded by `timeout_s` (SIGINT, then
/// SIGKILL 5 s later); output goes to `<dir>/<label>.out`. Returns the command line as the
/// manifest records it (without the timeout wrapper).
pub(crate) fn run_tool(
    ns: &apitap_tests::Netns,
    dir: &Path,
    label: &str,
    timeout_s: u64,
    program: &str,
    args: &[String],
) -> anyhow::Result<String> {
    let out = std::fs::File::create(dir.join(format!("{label}.out")))?;
    let err = out.try_clone()?;
    let mut full = strings(&["-s", "INT", "-k", "5", &timeout_s.to_string(), program]);
    full.extend(args.iter().cloned());
    let argv: Vec<&str> = full.iter().map(String::as_str).collect();
    let line = shell_line(program, args);
    eprintln!("  + {line}");
    let status = ns
        .cmd("timeout", &argv)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("running {program}"))?;
    match status.code() {
        // hydra, ffuf, gobuster, wget: 0; wget also exits 8 on 404s, 3 on quota.
        Some(0 | 1 | 3 | 8) => {}
        Some(124) => eprintln!("  ({program} stopped by its {timeout_s} s time bound)"),
        _ => bail!(
            "{program} failed ({status}); see {}",
            dir.join(format!("{label}.out")).display()
        ),
    }
    Ok(line)
}

/// curl in namespace `ns` from address `source` (10 s bound); returns the response body.
pub(crate) fn run_curl(
    ns: &apitap_tests::Netns,
    source: &str,
    args: &[&str],
) -> anyhow::Result<String> {
    let mut full = vec!["-sS", "--max-time", "10", "--interface", source];
    full.extend_from_slice(args);
    let out = ns.cmd("curl", &full).output().context("running curl")?;
    if !out.status.success() {
        bail!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The namespaces, the server and the scenario's working directory.
pub struct Lab {
    /// Server and client namespaces (removed on drop, after the server stops).
    pub topo: Topology,
    /// Working directory: word lists, tool output, the server's access log.
    pub dir: PathBuf,
    /// The server's access log (JSON lines).
    pub access_log: PathBuf,
    pub(crate) server: Option<Child>,
    /// How the server was started (for the manifest).
    pub server_command: String,
}

impl Lab {
    pub(crate) fn new(name: &str, server_args: &[&str], dir: &Path) -> anyhow::Result<Lab> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let topo = Topology::new("atk")?;
        // Extra client addresses: the distributed campaign and the benign users.
        let ok = topo
            .server
            .cmd(
                "ip",
                &["route", "add", "10.213.0.0/16", "dev", &topo.server_if],
            )
            .status()?
            .success();
        if !ok {
            bail!("adding the server's route to 10.213.0.0/16 failed");
        }
        let mut batch = String::new();
        for a in distributed_addrs().iter().chain(&benign_addrs(20)) {
            batch.push_str(&format!("addr add {a}/32 dev {}\n", topo.client_if));
        }
        let batch_file = dir.join("addrs.ip");
        std::fs::write(&batch_file, batch)?;
        let ok = topo
            .client
            .cmd("ip", &["-batch", &batch_file.to_string_lossy()])
            .status()?
            .success();
        if !ok {
            bail!("adding client addresses failed");
        }
        let access_log = dir.join("access.jsonl");
        let ready = dir.join("server.ready");
        let mut args = strings(&[
            "tests/testapi/server.py",
            "--host",
            SERVER_IP,
            "--port",
            &SERVER_PORT.to_string(),
            "--seed",
            &SEED.to_string(),
            "--users",
            &USERS.to_string(),
        ]);
        args.extend(strings(server_args));
        let server_command = shell_line("python3", &args);
        args.extend([
            "--access-log".into(),
            access_log.to_string_lossy().into_owned(),
            "--ready".into(),
            ready.to_string_lossy().into_owned(),
        ]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = std::fs::File::create(dir.join("server.log"))?;
        let child = topo
            .server
            .cmd("python3", &argv)
            .current_dir(workspace_root())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting tests/testapi/server.py")?;
        let mut lab = Lab {
            topo,
            dir: dir.to_path_buf(),
            access_log,
            server: Some(child),
            server_command,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.exists() {
            if let Some(c) = lab.server.as_mut()
                && let Some(st) = c.try_wait()?
            {
                bail!(
                    "{name}: server exited with {st}: {}",
                    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("{name}: server did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(lab)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{SERVER_IP}:{SERVER_PORT}{path}")
    }

    /// Runs `program args` in the client namespace (see [`run_tool`]).
    pub(crate) fn tool(
        &self,
        label: &str,
        timeout_s: u64,
        program: &str,
        args: &[String],
    ) -> anyhow::Result<String> {
        run_tool(
            &self.topo.client,
            &self.dir,
            label,
            timeout_s,
            program,
            args,
        )
    }

    /// curl from `source` (the attacker's own small steps: log in, request an OTP); returns
    /// the response body.
    pub(crate) fn curl(&self, source: &str, args: &[&str]) -> anyhow::Result<String> {
        run_curl(&self.topo.client, source, args)
    }

    /// Logs in over the JSON API from `source`; returns the token.
    pub(crate) fn login(&self, source: &str, user: &str, password: &str) -> anyhow::Result<String> {
        let body = json!({"username": user, "password": password}).to_string();
        let out = self.curl(
            source,
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
                &self.url("/api/login"),
            ],
        )?;
        let v: Value = serde_json::from_str(&out).with_context(|| format!("login: {out}"))?;
        v.get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("login as {user} failed: {out}"))
    }

    /// Starts scripted benign sessions (tests/testapi/sessions.py) from `sources`.
    pub(crate) fn sessions(
        &self,
        sources: &[String],
        duration_s: u64,
        gap_s: f64,
        think: f64,
        max_requests: u32,
        rng: u32,
    ) -> anyhow::Result<Background> {
        let log = std::fs::File::create(self.dir.join(format!("sessions-{rng}.out")))?;
        let child = self
            .topo
            .client
            .cmd(
                "python3",
                &[
                    &testapi("sessions.py"),
                    "--host",
                    SERVER_IP,
                    "--port",
                    &SERVER_PORT.to_string(),
                    "--seed",
                    &SEED.to_string(),
                    "--users",
                    &USERS.to_string(),
                    "--sources",
                    &sources.join(","),
                    "--duration",
                    &duration_s.to_string(),
                    "--gap",
                    &gap_s.to_string(),
                    "--think",
                    &think.to_string(),
                    "--max-requests",
                    &max_requests.to_string(),
                    "--rng",
                    &rng.to_string(),
                ],
            )
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting sessions.py")?;
        Ok(Background(Some(child)))
    }

    /// Stops the server (SIGTERM: it flushes its log) and waits.
    pub(crate) fn stop_server(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.server.take() {
            stop_child(&mut c, libc::SIGTERM, Duration::from_secs(10))?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            kill_child(&mut c);
        }
    }
}

/// Benign sessions running in the background; stopped gracefully (no request cut in half).
pub(crate) struct Background(Option<Child>);

impl Background {
    pub(crate) fn new(child: Child) -> Background {
        Background(Some(child))
    }

    /// Waits up to `timeout` for the background clients to finish by themselves; stops them
    /// after that.
    pub(crate) fn wait(mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        if let Some(c) = self.0.as_mut() {
            while Instant::now() < deadline {
                if c.try_wait()?.is_some() {
                    self.0 = None;
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.stop()
    }

    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        match self.0.take() {
            Some(mut c) => stop_child(&mut c, libc::SIGTERM, Duration::from_secs(30)),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            kill_child(&mut c);
        }
    }
}

// ---- scenarios ------------------------------------------------------------------------------
