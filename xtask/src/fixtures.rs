//! `cargo xtask record-fixtures`: records the pcap fixtures the golden replay tests use, from
//! real traffic (nginx, curl, a pipelining client) on a real kernel, with real loss and
//! reordering from `tc netem`. Writes `tests/fixtures/pcap/<name>.pcapng` and the matching
//! nginx access log `<name>.access.log` (the ground truth the tests compare against). Run it
//! only to change the fixtures; CI replays the committed files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use apitap_tests::{Nginx, Topology, workspace_root};

fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/pcap")
}

struct Dumpcap(Child);

impl Dumpcap {
    fn start(topo: &Topology, out: &Path) -> anyhow::Result<Dumpcap> {
        let _ = std::fs::remove_file(out);
        let child = topo
            .server
            .cmd(
                "dumpcap",
                &[
                    "-q",
                    "-i",
                    &topo.server_if,
                    "-f",
                    "tcp port 8080",
                    "-w",
                    &out.to_string_lossy(),
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dumpcap (apt-get install tshark)")?;
        for _ in 0..50 {
            if out.metadata().is_ok_and(|m| m.len() > 0) {
                std::thread::sleep(Duration::from_millis(300));
                return Ok(Dumpcap(child));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("dumpcap did not start")
    }

    fn stop(mut self) -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        self.0.wait()?;
        Ok(())
    }
}

fn scenario(
    name: &str,
    lossy: bool,
    traffic: impl FnOnce(&Topology, &Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = workspace_root().join("target/fixtures").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let topo = Topology::new("fix")?;
    let nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    if lossy {
        // MSS-sized segments instead of GSO super-packets, so that one message spans many
        // segments and a loss in the middle of it shows up out of order.
        for (ns, ifc) in [
            (&topo.client, &topo.client_if),
            (&topo.server, &topo.server_if),
        ] {
            if !ns
                .cmd(
                    "ethtool",
                    &["-K", ifc, "tso", "off", "gso", "off", "gro", "off"],
                )
                .status()?
                .success()
            {
                bail!("ethtool -K {ifc} failed");
            }
        }
        // Real loss both ways (this kernel has no netem): TCP retransmits, and the capture
        // point sees later segments before the retransmitted ones, i.e. out of order.
        for ns in [&topo.client, &topo.server] {
            for rule in [
                vec!["add", "table", "inet", "apitap"],
                vec![
                    "add",
                    "chain",
                    "inet",
                    "apitap",
                    "out",
                    "{ type filter hook output priority 0; }",
                ],
                vec![
                    "add", "rule", "inet", "apitap", "out", "meta", "l4proto", "tcp", "numgen",
                    "random", "mod", "100", "lt", "12", "counter", "drop",
                ],
                // Dropped after the capture point: the capture holds both copies.
                vec![
                    "add",
                    "chain",
                    "inet",
                    "apitap",
                    "in",
                    "{ type filter hook input priority 0; }",
                ],
                vec![
                    "add", "rule", "inet", "apitap", "in", "meta", "l4proto", "tcp", "numgen",
                    "random", "mod", "100", "lt", "5", "counter", "drop",
                ],
            ] {
                if !ns.cmd("nft", &rule).status()?.success() {
                    bail!("nft {rule:?} failed");
                }
            }
        }
    }
    let pcap = fixtures_dir().join(format!("{name}.pcapng"));
    let cap = Dumpcap::start(&topo, &pcap)?;
    traffic(&topo, &dir)?;
    cap.stop()?;
    if lossy {
        for ns in [&topo.client, &topo.server] {
            let out = ns.cmd("nft", &["list", "ruleset"]).output()?;
            for l in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("counter"))
            {
                println!("{}: {}", ns.name, l.trim());
            }
        }
    }
    std::fs::copy(
        nginx.dir.join("access.log"),
        fixtures_dir().join(format!("{name}.access.log")),
    )?;
    println!("recorded {}", pcap.display());
    Ok(())
}

const PIPELINE_CLIENT: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
reqs = b""
for i in range(n):
    last = i == n - 1
    body = b'{"n":%d}' % i
    if i % 2:
        reqs += b"POST /api/v1/orders?pipe=%d HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (i, len(body), b"Connection: close\r\n" if last else b"", body)
    else:
        reqs += b"GET /api/v1/users/%d?pipe=%d HTTP/1.1\r\nHost: api\r\n%s\r\n" % (i, i, b"Connection: close\r\n" if last else b"")
s = socket.create_connection((host, port))
s.sendall(reqs)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.count(b"HTTP/1.1 "))
"#;

/// Fake but valid (checksums, dates, IIN ranges) sensitive values of the `sensitive` fixture;
/// the minimisation replay test asserts none of them survives `payload = labels`.
const SENSITIVE_REPORT: &str = r#"{"code":0,"data":[{"name":"张伟","idCard":"440304198506123017","mobile":"13812345678","bankCard":"6228480402564890018","email":"zhang.wei@example.com"},{"name":"李娜","idCard":"310115199203054572","mobile":"15987654321","bankCard":"6222021234567890128","email":"li.na@example.org"},{"name":"王芳","idCard":"11010519491231002X","mobile":"18611112222","bankCard":"6228480402564890018","maskedMobile":"186****2222"}],"orders":[{"id":1001,"status":"shipped","amount":129.5,"currency":"CNY","items":3},{"id":1002,"status":"paid","amount":88.0,"currency":"CNY","items":1},{"id":1003,"status":"created","amount":15.9,"currency":"CNY","items":2},{"id":1004,"status":"shipped","amount":402.3,"currency":"CNY","items":7},{"id":1005,"status":"refunded","amount":66.6,"currency":"CNY","items":1},{"id":1006,"status":"paid","amount":250.0,"currency":"CNY","items":4},{"id":1007,"status":"created","amount":19.9,"currency":"CNY","items":1},{"id":1008,"status":"shipped","amount":73.1,"currency":"CNY","items":2}]}"#;

/// Records the fixtures named in `only` (comma-separated), or every fixture.
pub fn run(only: Option<&str>) -> anyhow::Result<()> {
    let wanted = |name: &str| only.is_none_or(|o| o.split(',').any(|n| n.trim() == name));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("recording fixtures needs root (network namespaces, packet capture)");
    }
    std::fs::create_dir_all(fixtures_dir())?;
    crate::setup::install_tools(
        &[
            ("dumpcap", "tshark"),
            ("editcap", "wireshark-common"),
            ("nft", "nftables"),
            ("ethtool", "ethtool"),
        ],
        "to record the fixtures",
    )?;

    // The analyzer's httpbin capture (issue 5's inventory evaluation) is recorded by an ignored
    // test of the analyzer, run here; only on request, as it needs httpbin and gunicorn.
    if only.is_some_and(|o| o.split(',').any(|n| n.trim() == "httpbin")) {
        crate::setup::pip_install(&[("httpbin", "httpbin[mainapp]"), ("gunicorn", "gunicorn")])?;
        crate::cargo(&[
            "test",
            "-p",
            "apitap-analyzer",
            "--test",
            "record_httpbin",
            "--",
            "--ignored",
            "--nocapture",
        ])?;
    }

    if wanted("sensitive") {
        // Personal data both ways through real nginx: a JSON POST with an ID number, mobile,
        // card and password (plus a bearer token and session cookie), an ID number in the
        // query, and a user list served from a file, plain and gzip-compressed.
        scenario("sensitive", false, |topo, dir| {
            std::fs::write(dir.join("nginx/report.json"), SENSITIVE_REPORT)?;
            let u = |p: &str| topo.url(p);
            topo.curl(&[
                "-o",
                "/dev/null",
                "-H",
                "Content-Type: application/json",
                "-H",
                "Authorization: Bearer tok_9f8e7d6c5b4a39281706",
                "-H",
                "Cookie: JSESSIONID=sess4c0ffee5eed1234; lang=zh",
                "--data-binary",
                r#"{"name":"张伟","idCard":"440304198506123017","mobile":"13812345678","bankCard":"6228480402564890018","password":"Tr0ub4dor-x9Q"}"#,
                &u("/api/v1/orders?sfzh=310115199203054572&page=1"),
            ])?;
            topo.curl(&["-o", "/dev/null", &u("/api/v1/report?plain=1")])?;
            topo.curl(&[
                "-o",
                "/dev/null",
                "--compressed",
                &u("/api/v1/report?gzip=1"),
            ])?;
            Ok(())
        })?;
    }
    if !wanted("keepalive") {
        return Ok(());
    }
    scenario("keepalive", false, |topo, dir| {
        let u = |p: &str| topo.url(p);
        topo.curl(&[
            "-o",
            "/dev/null",
            &u("/api/v1/users?page=1"),
            "-o",
            "/dev/null",
            &u("/api/v1/users/7"),
            "-o",
            "/dev/null",
            &u("/missing"),
        ])?;
        let big = dir.join("big.json");
        std::fs::write(&big, format!("{{\"rows\":\"{}\"}}", "x".repeat(6000)))?;
        topo.curl(&[
            "-o",
            "/dev/null",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", big.display()),
            &u("/api/v1/orders?chunked=1"),
        ])?;
        topo.curl(&[
            "-o",
            "/dev/null",
            "--data-binary",
            "{\"a\":1}",
            &u("/api/v1/orders?cl=1"),
        ])?;
        topo.curl(&[
            "-o",
            "/dev/null",
            "--compressed",
            &u("/api/v1/report?gzip=1"),
            "-o",
            "/dev/null",
            &u("/api/v1/report?plain=1"),
        ])?;
        topo.curl(&["-o", "/dev/null", "-I", &u("/api/v1/report?head=1")])?;
        topo.curl(&[
            "-o",
            "/dev/null",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            &format!("@{}", big.display()),
            &u("/api/v1/orders?expect=1"),
        ])?;
        topo.curl(&[
            "-o",
            "/dev/null",
            "--http1.0",
            &u("/api/v1/users/9?http10=1"),
        ])?;
        Ok(())
    })?;

    scenario("pipelining", false, |topo, _| {
        for n in [5, 8] {
            let out = topo
                .client
                .cmd(
                    "python3",
                    &[
                        "-c",
                        PIPELINE_CLIENT,
                        apitap_tests::SERVER_IP,
                        "8080",
                        &n.to_string(),
                    ],
                )
                .output()?;
            let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if got != n.to_string() {
                bail!("pipelining client got {got} responses for {n} requests");
            }
        }
        Ok(())
    })?;

    scenario("lossy", true, |topo, dir| {
        let body = dir.join("body.json");
        std::fs::write(&body, format!("{{\"blob\":\"{}\"}}", "y".repeat(8000)))?;
        for round in 0..4 {
            let mut args: Vec<String> = Vec::new();
            for i in 0..5 {
                args.extend([
                    "-o".into(),
                    "/dev/null".into(),
                    topo.url(&format!("/api/v1/report?round={round}&i={i}")),
                ]);
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            topo.curl(&argv)?;
            topo.curl(&[
                "-o",
                "/dev/null",
                "--data-binary",
                &format!("@{}", body.display()),
                &topo.url(&format!("/api/v1/orders?round={round}")),
            ])?;
        }
        Ok(())
    })?;

    // Capture loss: the keepalive capture with data segments removed (what a sensor that
    // dropped packets would have seen).
    let src = fixtures_dir().join("keepalive.pcapng");
    let frames = Command::new("tshark")
        .args([
            "-r",
            &src.to_string_lossy(),
            "-Y",
            "tcp.len > 0",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .context("running tshark")?;
    let data_frames: Vec<String> = String::from_utf8_lossy(&frames.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    if data_frames.len() < 20 {
        bail!(
            "keepalive capture has only {} data frames",
            data_frames.len()
        );
    }
    // Drop the 2nd, 7th and 15th data frames.
    let drop: Vec<&str> = [1usize, 6, 14]
        .iter()
        .map(|i| data_frames[*i].as_str())
        .collect();
    let dst = fixtures_dir().join("missing.pcapng");
    let mut cmd = Command::new("editcap");
    cmd.arg(&src).arg(&dst).args(&drop);
    if !cmd.status()?.success() {
        bail!("editcap failed");
    }
    std::fs::copy(
        fixtures_dir().join("keepalive.access.log"),
        fixtures_dir().join("missing.access.log"),
    )?;
    println!("recorded {} (dropped frames {drop:?})", dst.display());
    Ok(())
}
