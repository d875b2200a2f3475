//! A throwaway PostgreSQL cluster for tests: `initdb` and `pg_ctl` from the Debian
//! `postgresql` package, run as the `postgres` OS user when the test runs as root (PostgreSQL
//! refuses to run as root), in a temporary directory, on a free loopback port; stopped and
//! removed on drop. The inventory tests (`analyzer/tests`) and the trace-back tests
//! (`tests/tests/trace_back.rs`) share it.
// Test harness: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

fn require(test: &str, problem: Option<String>) -> bool {
    crate::require(test, "test", problem)
}

static SERIAL: AtomicU32 = AtomicU32::new(0);

fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A running cluster.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// Connection URL of its `postgres` database.
    pub url: String,
}

impl PgCluster {
    fn cmd(&self, tool: &str) -> Command {
        as_postgres(&self.bin.join(tool))
    }

    /// Starts a cluster, or returns `None` (after printing why) when PostgreSQL is not
    /// installed outside CI.
    pub fn start(test: &str) -> Option<PgCluster> {
        PgCluster::start_inner(test, None)
    }

    /// Starts a cluster that accepts TCP clients only over TLS (`hostssl`) with a SCRAM
    /// password for `postgres`; its certificate (for IP 127.0.0.1) is issued by a CA made for
    /// the test. `url` carries no password.
    pub fn start_secure(test: &str, password: &str) -> Option<(PgCluster, Secured)> {
        let cluster = PgCluster::start_inner(test, Some(password))?;
        let secured = Secured {
            ca_file: cluster.dir.join("tls/ca.crt"),
        };
        Some((cluster, secured))
    }

    fn start_inner(test: &str, password: Option<&str>) -> Option<PgCluster> {
        let bin = bin_dir();
        let problem = match &bin {
            None => Some(
                "PostgreSQL is not installed (apt-get install postgresql): no \
                 /usr/lib/postgresql/*/bin/initdb"
                    .to_owned(),
            ),
            Some(_) if is_root() && !has_postgres_user() => {
                Some("running as root but there is no `postgres` user to run the server".into())
            }
            Some(_) => None,
        };
        if !require(test, problem) {
            return None;
        }
        let bin = bin?;
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("apitap-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres", &dir.to_string_lossy()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the cluster directory failed");
        }
        let data = dir.join("data");
        let mut cluster = PgCluster {
            dir: dir.clone(),
            bin,
            url: String::new(),
        };
        let mut initdb = cluster.cmd("initdb");
        initdb.args([
            "-D",
            &data.to_string_lossy(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        if let Some(password) = password {
            let pwfile = dir.join("pwfile");
            std::fs::write(&pwfile, format!("{password}\n")).unwrap();
            chown_postgres(&pwfile);
            initdb.arg(format!("--pwfile={}", pwfile.display()));
        }
        let out = initdb.output().unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.display()
        );
        if password.is_some() {
            let tls = dir.join("tls");
            make_certificates(&tls);
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
            )
            .unwrap();
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                tls.display()
            ));
        }
        let out = cluster
            .cmd("pg_ctl")
            .args([
                "-D",
                &data.to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &dir.join("log").to_string_lossy(),
                "-w",
                "-t",
                "60",
                "start",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        cluster.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        Some(cluster)
    }

    /// Creates a fresh database and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        format!("{}/{name}", self.url.trim_end_matches("/postgres"))
    }
}

/// What a client of [`PgCluster::start_secure`] needs.
pub struct Secured {
    /// The CA that issued the server's certificate (PEM).
    pub ca_file: PathBuf,
}

fn chown_postgres(path: &Path) {
    if is_root() {
        let ok = Command::new("chown")
            .args(["postgres:postgres", &path.to_string_lossy()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown {}", path.display());
    }
}

/// A CA and a server certificate for IP 127.0.0.1 signed by it, with `openssl` (Debian's
/// `openssl` package); the server key is the server's alone (PostgreSQL insists).
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=apitap test CA"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    run(&csr);
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "server.crt",
    ]);
    use std::os::unix::fs::PermissionsExt as _;
    for f in ["", "server.key", "server.crt", "ca.crt"] {
        chown_postgres(&dir.join(f));
    }
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

fn has_postgres_user() -> bool {
    Command::new("id")
        .arg("postgres")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .args([
                "-D",
                &self.dir.join("data").to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
