//! Records the httpbin evaluation fixture with the real sensor (issue 5 evaluation, R-INV-1).
//!
//! Ignored by default: it needs root (network namespaces, eBPF), the sensor binary, and Python
//! with `httpbin[mainapp]` and `gunicorn`. CI does not run it; CI replays the committed
//! recording (`tests/data/httpbin/events.jsonl.gz`, see `inventory_eval.rs`). To refresh the
//! recording:
//!
//! ```sh
//! pip install 'httpbin[mainapp]' gunicorn
//! cargo build -p apitap-sensor                      # the testbed looks in target/debug
//! APITAP_BIN_DIR=$PWD/target/debug cargo test -p apitap-analyzer --test record_httpbin \
//!     -- --ignored --nocapture
//! # the second, independent recording:
//! APITAP_HTTPBIN_SEED=11 APITAP_BIN_DIR=… cargo test … --test record_httpbin -- --ignored
//! ```
//!
//! httpbin runs under gunicorn in the testbed's server namespace, the sensor captures on the
//! server's veth, and `tests/data/httpbin/generate_traffic.py` drives every operation of
//! httpbin's `/spec.json` from the client namespace. The spec is fetched over the server
//! namespace's loopback, so it is not part of the captured traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apitap_tests::{SERVER_IP, Sensor, Topology, require_privileges};

const PORT: u16 = 8080;

struct Gunicorn(Child);

impl Drop for Gunicorn {
    fn drop(&mut self) {
        // SAFETY: signalling our own child (gunicorn's master, exec'd by `ip netns exec`).
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/httpbin")
}

#[test]
#[ignore = "records the fixture (root, sensor binary, httpbin + gunicorn): run by `cargo xtask record-fixtures --scenario httpbin`"]
fn record_httpbin_fixture() -> anyhow::Result<()> {
    if !require_privileges("record_httpbin_fixture") {
        return Ok(());
    }
    let probe = Command::new("python3")
        .args(["-c", "import httpbin, gunicorn"])
        .status()?;
    anyhow::ensure!(
        probe.success(),
        "python3 cannot import httpbin and gunicorn: pip install 'httpbin[mainapp]' gunicorn"
    );
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("record_httpbin");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let topo = Topology::new("inv")?;
    let bind = format!("{SERVER_IP}:{PORT}");
    let log = std::fs::File::create(work.join("gunicorn.log"))?;
    let gunicorn = Gunicorn(
        topo.server
            .cmd(
                "python3",
                &[
                    "-m",
                    "gunicorn",
                    "-b",
                    &bind,
                    "-w",
                    "2",
                    "--timeout",
                    "60",
                    "httpbin:app",
                ],
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    // Ready when /spec.json answers over the server namespace's loopback (not captured).
    let spec_path = work.join("spec.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = topo
            .server
            .cmd(
                "curl",
                &[
                    "-sSf",
                    "-o",
                    &spec_path.to_string_lossy(),
                    &format!("http://{bind}/spec.json"),
                ],
            )
            .stderr(Stdio::null())
            .status()?
            .success();
        if ok {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "gunicorn did not start");
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut sensor = Sensor::start(&topo.server, &topo.server_if, &[PORT], &work.join("sensor"))?;
    // APITAP_HTTPBIN_SEED records another traffic sample (events-seed<N>.jsonl.gz).
    let seed = std::env::var("APITAP_HTTPBIN_SEED").unwrap_or_else(|_| "5".into());
    let out_name = if seed == "5" {
        "events.jsonl.gz".to_owned()
    } else {
        format!("events-seed{seed}.jsonl.gz")
    };
    let script = data_dir().join("generate_traffic.py");
    let out = topo
        .client
        .cmd(
            "python3",
            &[
                &script.to_string_lossy(),
                &format!("http://{bind}"),
                "--spec",
                &spec_path.to_string_lossy(),
                "--seed",
                &seed,
            ],
        )
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("generator: {}", String::from_utf8_lossy(&out.stdout).trim());
    std::thread::sleep(Duration::from_secs(2));
    sensor.stop()?;
    drop(gunicorn);

    let events = std::fs::read(&sensor.events)?;
    let lines = events
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    println!("captured {lines} events");
    let gz = std::fs::File::create(data_dir().join(&out_name))?;
    let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::best());
    enc.write_all(&events)?;
    enc.finish()?;
    std::fs::copy(&spec_path, data_dir().join("spec.json"))?;
    Ok(())
}
