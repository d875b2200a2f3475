//! The demo of the product's whole job (issue 19): a small customer API holding personal data
//! (nginx, in one network namespace), benign users with browsers' User-Agents and a real
//! attack tool (ffuf: credential stuffing, then a sequential ID walk) in another, and apitap
//! watching the server's veth. By default the single-process mode (`apitap run`: sensor and
//! analyzer joined in memory, no broker); `--kafka` runs `apitap-sensor` → tansu →
//! `apitap-analyzer run` instead. Then it prints what the analyzer produced, read back from
//! its real outputs: the inventory store, the data map, the alerts file, the metrics.
//!
//! Every client loop is bounded in count and time, all traffic stays in the namespaces, and
//! everything it creates is removed on exit, on failure and on Ctrl-C. No sensitive value is
//! printed by the demo itself: only labels, and the masked samples the product emits.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use apitap_tests::analyzer::AnalyzerProcess;
use apitap_tests::broker::{Broker, ConfiguredSensor, kafka_sensor_config};
use apitap_tests::{CLIENT_IP, METRICS_ADDR, Netns, Nginx, SERVER_IP, SERVER_PORT, Topology};
use serde_json::Value;

use crate::attacks::lab::{Rng, run_tool, strings};
use crate::demo_data;

/// How the demo runs.
pub struct Opts {
    /// Through a real Kafka-protocol broker (tansu) instead of the in-memory bus.
    pub kafka: bool,
    /// Assert the results (templated customer endpoint, its data map, the detections naming
    /// the attacker, a valid OCSF alert); fail otherwise.
    pub check: bool,
}

/// Customers the API serves (ids 1..=CUSTOMERS).
const CUSTOMERS: u32 = 300;
/// Rows per list page.
const PAGE_SIZE: u32 = 20;
/// The ID walk's range: beyond CUSTOMERS it meets 404s, as a real walk does.
const WALK_TO: u32 = 450;
/// The one account the login accepts (nginx alone cannot check more without a backend; the
/// demo says so). Its password never appears in the output.
const DEMO_USER: &str = "wang.fang";
const DEMO_PASSWORD: &str = "Spring#2026";
/// Benign users: (address, User-Agent, logs in). Their /24 differs from the attacker's.
const BENIGN: &[(&str, &str, bool)] = &[
    (
        "10.213.5.11",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        true,
    ),
    (
        "10.213.5.12",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        false,
    ),
    (
        "10.213.5.13",
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        true,
    ),
    (
        "10.213.5.14",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        false,
    ),
];
/// Requests per benign user at most, and seconds of benign traffic at most.
const BENIGN_MAX_REQUESTS: usize = 40;
const BENIGN_SECONDS: u64 = 30;
/// Seconds of benign traffic before the attack starts.
const WARMUP_SECONDS: u64 = 6;
/// The analyzer's metrics endpoint (server namespace), next to the sensor's.
const ANALYZER_METRICS: &str = "127.0.0.1:9465";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static START: OnceLock<Instant> = OnceLock::new();

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaned up");
    }
    Ok(())
}

/// Starts the clock of the progress lines (called before setup and build, so that the
/// reported time to first output counts them).
pub fn start_clock() {
    START.get_or_init(Instant::now);
    // SAFETY: installing an async-signal-safe handler that only stores to an atomic. Cargo,
    // apt-get and the tools get the same SIGINT from the terminal and stop by themselves.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
}

fn elapsed() -> Duration {
    START.get_or_init(Instant::now).elapsed()
}

/// The first progress line, before setup and build.
pub fn announce_build() {
    step("apitap demo: installing what is missing, building (warm: seconds; first run: minutes)");
}

/// One progress line on the terminal, with the time since the demo started.
fn step(msg: &str) {
    println!("[{:>6.1}s] {msg}", elapsed().as_secs_f64());
    let _ = std::io::stdout().flush();
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The product under test: embedded (`apitap run`) or the two services around a broker.
enum Product {
    Embedded { child: Option<Child>, log: PathBuf },
    Kafka(Box<KafkaProduct>),
}

struct KafkaProduct {
    // Field order is drop order: the sensor and the analyzer go before the broker.
    sensor: ConfiguredSensor,
    analyzer: AnalyzerProcess,
    broker: Broker,
}

impl Product {
    /// Stops capture and lets the analyzer drain and write its final state.
    fn stop(&mut self) -> anyhow::Result<()> {
        match self {
            Product::Embedded { child, log } => {
                let log = log.clone();
                apitap_tests::stop_child(
                    "apitap",
                    child.take(),
                    libc::SIGTERM,
                    Duration::from_secs(60),
                    || std::fs::read_to_string(&log).unwrap_or_default(),
                )
            }
            Product::Kafka(k) => {
                // The caller waited until the analyzer had taken every event.
                k.sensor.stop()?;
                k.analyzer.stop()
            }
        }
    }
}

impl Drop for Product {
    fn drop(&mut self) {
        if let Product::Embedded { child, .. } = self {
            apitap_tests::kill_child(child.take());
        }
    }
}

/// Paths of the run's outputs.
struct Outputs {
    dir: PathBuf,
    store: String,
    alerts: PathBuf,
}

/// Runs the demo.
pub fn run(opts: &Opts) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and loads eBPF programs: run it as root");
    }
    let dir = apitap_tests::workspace_root().join("target/apitap-demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let out = Outputs {
        dir: dir.clone(),
        store: format!("sqlite:{}", dir.join("inventory.db").display()),
        alerts: dir.join("alerts.jsonl"),
    };
    let mode = if opts.kafka {
        "apitap-sensor → Kafka (tansu) → apitap-analyzer run"
    } else {
        "embedded: `apitap run`, sensor and analyzer in one process, in-memory bus"
    };
    println!("\n== apitap demo: the whole job ({mode}) ==");

    let topo = Topology::new("demo")?;
    add_benign_addresses(&topo, &dir)?;
    write_site(&dir.join("www"))?;
    // nginx runs as a systemd service would, in a cgroup of its own: the sensor names it on
    // every event and the alerts name it (R-CAP-5).
    let cgroup = apitap_tests::Cgroup::create(
        &format!("apitap-demo-{}", std::process::id()),
        &format!("system.slice/{DEMO_UNIT}"),
    )?;
    let nginx = Nginx::start_conf_in(
        &topo.server,
        &dir.join("nginx"),
        &nginx_conf(&dir.join("nginx"), &dir.join("www")),
        "/api/v1/health",
        Some(&cgroup),
    )?;
    step(&format!(
        "server {SERVER_IP}:{SERVER_PORT} [netns {}]: nginx serving {CUSTOMERS} customers \
         (name, PRC ID, mobile, UnionPay card, e-mail, address), a paged list (masked), \
         login (one account accepted by an nginx map on the body, else 401 JSON), static \
         assets, health",
        topo.server.name
    ));
    check_interrupt()?;

    let mut product = start_product(opts, &topo, &out)?;
    step(&format!(
        "apitap attached to {} (XDP ingress + TC egress), port {SERVER_PORT}",
        topo.server_if
    ));
    check_interrupt()?;

    // Benign users browse until the detections are in; the attack starts after a warm-up.
    let stop_users = Arc::new(AtomicBool::new(false));
    // On an early return too: the users stop before their namespace goes.
    let _stop_on_exit = StopOnDrop(stop_users.clone());
    let users = start_benign(&topo, &stop_users)?;
    step(&format!(
        "{} benign users (browsers' User-Agents, think times 0.3–1.5 s, ≤ {BENIGN_MAX_REQUESTS} \
         requests or {BENIGN_SECONDS} s each) from 10.213.5.11–14; two log in (the one \
         account the login accepts)",
        BENIGN.len()
    ));
    sleep_checked(Duration::from_secs(WARMUP_SECONDS))?;

    let attack_dir = dir.join("attack");
    std::fs::create_dir_all(&attack_dir)?;
    let attacks = run_attacks(&topo, &attack_dir)?;

    step("waiting for the detections (alerts file)");
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let creates = creates(&out.alerts)?;
        for a in &creates {
            let key = format!("{}/{}", det(a, "detector"), det(a, "kind"));
            if !seen.contains(&key) {
                step(&format!("  raised: {key}"));
                seen.push(key);
            }
        }
        let have = |d: &str| creates.iter().any(|a| det(a, "detector") == d);
        if have("credential_stuffing") && have("enumeration") {
            break;
        }
        if Instant::now() > deadline {
            step("  (not every expected detection within 40 s; printing what there is)");
            break;
        }
        sleep_checked(Duration::from_millis(300))?;
    }

    stop_users.store(true, Ordering::SeqCst);
    let mut benign_requests = 0;
    for u in users {
        benign_requests += u
            .join()
            .map_err(|_| anyhow::anyhow!("a benign user thread panicked"))??;
    }
    step(&format!("benign users done: {benign_requests} requests"));

    // Counters while the processes still run (their /metrics go with them), once the sensor
    // has turned every request nginx logged into an event and the analyzer has taken them
    // (bounded: a shortfall is reported, and fails --check).
    let served = nginx.access_log()?.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (sensor_metrics, analyzer_metrics) = loop {
        let sensor = metrics_at(&topo.server, METRICS_ADDR)?;
        let analyzer = metrics_at(&topo.server, ANALYZER_METRICS)?;
        let done = sum_prefix(&sensor, "apitap_sensor_events_total") >= served
            && sum_prefix(&analyzer, "apitap_analyzer_events_total") >= served;
        if done || Instant::now() > deadline {
            break (sensor, analyzer);
        }
        sleep_checked(Duration::from_millis(300))?;
    };
    product.stop()?;
    step("apitap stopped; final inventory flushed to the store");
    // Through Kafka, the alerts also went to the alert topic: read it as a SIEM would.
    let topic = match &product {
        Product::Kafka(k) => Some(read_alert_topic(&k.broker, &out.alerts)?),
        Product::Embedded { .. } => None,
    };

    let mut report = print_results(&out, &attacks, served, &sensor_metrics, &analyzer_metrics)?;
    if let Some(t) = topic {
        println!(
            "\n== alert topic {ALERT_TOPIC} (what the SIEM consumes) ==\n{} messages, keyed by \
             finding uid, format header {}; the same documents as the alerts file ({} lines): {}",
            t.messages,
            t.format,
            t.file_lines,
            if t.same { "yes" } else { "NO" }
        );
        report.topic = Some(t);
    }
    println!(
        "\ndemo took {:.1} s (outputs under {})",
        elapsed().as_secs_f64(),
        out.dir.display()
    );
    if opts.check {
        check(&report)?;
        println!("check: every expected result is there");
    }
    drop(product);
    Ok(())
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn sleep_checked(d: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        check_interrupt()?;
        std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
    }
    Ok(())
}

// ---- the API -------------------------------------------------------------------------------

fn write_site(www: &Path) -> anyhow::Result<()> {
    let customers = demo_data::customers(CUSTOMERS);
    let dir = www.join("customers");
    std::fs::create_dir_all(&dir)?;
    for c in &customers {
        std::fs::write(
            dir.join(format!("{}.json", c.id)),
            serde_json::to_vec(&c.detail_json())?,
        )?;
    }
    let pages = www.join("pages");
    std::fs::create_dir_all(&pages)?;
    let total_pages = CUSTOMERS.div_ceil(PAGE_SIZE);
    for (i, chunk) in customers.chunks(PAGE_SIZE as usize).enumerate() {
        let page = i as u32 + 1;
        let doc = serde_json::json!({
            "page": page,
            "size": PAGE_SIZE,
            "total": CUSTOMERS,
            "total_pages": total_pages,
            "items": chunk.iter().map(demo_data::Customer::list_json).collect::<Vec<_>>(),
        });
        std::fs::write(
            pages.join(format!("{page}.json")),
            serde_json::to_vec(&doc)?,
        )?;
    }
    let statics = www.join("static");
    std::fs::create_dir_all(&statics)?;
    std::fs::write(
        www.join("index.html"),
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>客户中心</title>\
         <link rel=\"stylesheet\" href=\"/static/app.css\"><script src=\"/static/app.js\" defer>\
         </script></head><body><h1>客户中心</h1><div id=\"app\"></div></body></html>\n",
    )?;
    std::fs::write(
        statics.join("app.css"),
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\n",
    )?;
    std::fs::write(
        statics.join("app.js"),
        "fetch('/api/v1/customers?page=1&size=20').then(r=>r.json()).then(d=>{\
         document.getElementById('app').textContent=d.total+' customers'});\n",
    )?;
    Ok(())
}

/// nginx configuration of the demo API. The login needs the request body, which nginx reads
/// only when it proxies: `/api/v1/login` proxies to a second server on the server's loopback
/// (not captured) and hands it a header computed from the body by a `map` (evaluated when the
/// proxied request is built, after the body is read). One account is accepted; everything else
/// gets 401 with a JSON error.
fn nginx_conf(dir: &Path, www: &Path) -> String {
    let w = www.display();
    let token = "dGVtby1zZXNzaW9uLXRva2VuLWZvci13YW5nLmZhbmc";
    format!(
        r#"{preamble}  client_body_buffer_size 16k;
  keepalive_requests 1000;
  charset utf-8;
  charset_types application/json;
  types {{ text/html html; text/css css; application/javascript js; application/json json; }}
  map $request_body $login_ok {{
    default "no";
    "~^\{{\s*\"username\"\s*:\s*\"{DEMO_USER}\"\s*,\s*\"password\"\s*:\s*\"{DEMO_PASSWORD}\"\s*\}}$" "yes";
  }}
  map $arg_page $page {{
    default 1;
    "~^(?<p>[1-9][0-9]?)$" $p;
  }}
  server {{
    listen 127.0.0.1:8081;
    access_log off;
    default_type application/json;
    location / {{
      if ($http_x_demo_login = "yes") {{
        add_header Set-Cookie "sid={token}; Path=/; HttpOnly";
        return 200 '{{"token":"{token}","user":{{"id":1001,"username":"{DEMO_USER}"}}}}';
      }}
      return 401 '{{"error":"invalid_credentials","message":"用户名或密码错误"}}';
    }}
  }}
  server {{
    listen {SERVER_IP}:{SERVER_PORT};
    root {w};
    default_type application/json;
    error_page 404 = @notfound;
    location @notfound {{ return 404 '{{"error":"not_found"}}'; }}
    location = / {{ try_files /index.html =404; }}
    location /static/ {{ expires 1h; }}
    location = /api/v1/health {{ return 200 '{{"status":"ok"}}'; }}
    location = /api/v1/customers {{ try_files /pages/$page.json =404; }}
    location ~ ^/api/v1/customers/([0-9]+)$ {{ try_files /customers/$1.json =404; }}
    location = /api/v1/login {{
      if ($request_method != POST) {{ return 405 '{{"error":"method_not_allowed"}}'; }}
      proxy_set_header X-Demo-Login $login_ok;
      proxy_pass http://127.0.0.1:8081;
    }}
    location / {{ return 404 '{{"error":"not_found"}}'; }}
  }}
}}
"#,
        preamble = apitap_tests::nginx_preamble(dir, 512)
    )
}

/// The benign users' addresses on the client side, routed from the server.
fn add_benign_addresses(topo: &Topology, dir: &Path) -> anyhow::Result<()> {
    let ok = topo
        .server
        .cmd(
            "ip",
            &["route", "add", "10.213.5.0/24", "dev", &topo.server_if],
        )
        .status()?
        .success();
    if !ok {
        bail!("adding the server's route to 10.213.5.0/24 failed");
    }
    let mut batch = String::new();
    for (addr, _, _) in BENIGN {
        batch.push_str(&format!("addr add {addr}/32 dev {}\n", topo.client_if));
    }
    let file = dir.join("addrs.ip");
    std::fs::write(&file, batch)?;
    let ok = topo
        .client
        .cmd("ip", &["-batch", &file.to_string_lossy()])
        .status()?
        .success();
    if !ok {
        bail!("adding the benign users' addresses failed");
    }
    Ok(())
}

// ---- the product ---------------------------------------------------------------------------

fn start_product(opts: &Opts, topo: &Topology, out: &Outputs) -> anyhow::Result<Product> {
    let key = out.dir.join("label-hash.key");
    write_hash_key(&key)?;
    let shared = format!(
        "[metrics]\nlisten = \"{ANALYZER_METRICS}\"\n\
         [inventory]\nstore = \"{}\"\nflush_interval_secs = 1\ndiscovery_grace_secs = 0\n\
         [labels]\nhash_key_file = {:?}\n",
        out.store,
        key.display().to_string()
    );
    if !opts.kafka {
        let sensor_cfg = out.dir.join("sensor.toml");
        std::fs::write(
            &sensor_cfg,
            format!(
                "[sensor]\nid = \"demo\"\n[capture]\ninterfaces = [\"{}\"]\nports = [{SERVER_PORT}]\n\
                 [metrics]\nlisten = \"{METRICS_ADDR}\"\n{}",
                topo.server_if,
                apitap_tests::Cgroup::sensor_section()?
            ),
        )?;
        let analyzer_cfg = out.dir.join("analyzer.toml");
        std::fs::write(
            &analyzer_cfg,
            format!(
                "{shared}[output]\nalerts_path = {:?}\nsummary_path = {:?}\n\
                 summary_format = \"json\"\nsummary_interval_secs = 5\n",
                out.alerts.display().to_string(),
                out.dir.join("summary.json").display().to_string()
            ),
        )?;
        let log = out.dir.join("apitap.log");
        let child = apitap_tests::spawn_embedded(&topo.server, &sensor_cfg, &analyzer_cfg, &log)?;
        return Ok(Product::Embedded {
            child: Some(child),
            log,
        });
    }

    step("starting tansu (Kafka-protocol broker) in the server namespace");
    let broker = Broker::start_in(&topo.server, &out.dir.join("broker"))?;
    broker.create_topic("apitap.events.v1", 3)?;
    broker.create_topic(ALERT_TOPIC, 1)?;
    let sections = format!(
        "[kafka]\nbrokers = [\"{}\"]\n[kafka.consumer]\ngroup_id = \"apitap-demo\"\n\
         commit_interval_ms = 500\n[kafka.librdkafka_options]\n\"session.timeout.ms\" = 6000\n\
         {shared}",
        broker.bootstrap()
    );
    let analyzer = AnalyzerProcess::start(
        Some(&topo.server),
        &out.dir.join("analyzer"),
        &sections,
        &format!("alerts_path = {:?}", out.alerts.display().to_string()),
    )?;
    analyzer.wait_log("kafka partitions assigned", 1, Duration::from_secs(60))?;
    step("apitap-analyzer run: joined consumer group apitap-demo on apitap.events.v1");
    let sensor = ConfiguredSensor::start(
        &topo.server,
        &(kafka_sensor_config(
            "demo",
            &topo.server_if,
            &broker,
            &out.dir.join("spool"),
            100_000,
        ) + &apitap_tests::Cgroup::sensor_section()?),
        &out.dir.join("sensor"),
    )?;
    Ok(Product::Kafka(Box::new(KafkaProduct {
        sensor,
        analyzer,
        broker,
    })))
}

/// The site secret that keys the value hashes (owner-only, as the product requires).
fn write_hash_key(path: &Path) -> anyhow::Result<()> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .context("reading /dev/urandom")?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(hex.as_bytes())?;
    Ok(())
}

// ---- the clients ---------------------------------------------------------------------------

fn start_benign(
    topo: &Topology,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<anyhow::Result<u64>>>> {
    let mut handles = Vec::new();
    for (i, &(addr, ua, logs_in)) in BENIGN.iter().enumerate() {
        let ns = topo.client.name.clone();
        let stop = stop.clone();
        let h = std::thread::Builder::new()
            .name(format!("benign-{i}"))
            .spawn(move || benign_user(&ns, i as u64, addr, ua, logs_in, &stop))
            .context("starting a benign user")?;
        handles.push(h);
    }
    Ok(handles)
}

/// One benign user: the page and its assets, a login (the known account), list pages and
/// a few customers, now and then the health check; think time between steps. Returns the
/// number of requests sent.
fn benign_user(
    ns: &str,
    seed: u64,
    addr: &str,
    ua: &str,
    logs_in: bool,
    stop: &AtomicBool,
) -> anyhow::Result<u64> {
    let mut rng = Rng::new(0xbe_0000 + seed);
    let deadline = Instant::now() + Duration::from_secs(BENIGN_SECONDS);
    let base = format!("http://{SERVER_IP}:{SERVER_PORT}");
    let mut sent = 0u64;
    let mut script: Vec<Vec<String>> = vec![
        vec![format!("{base}/")],
        vec![
            format!("{base}/static/app.css"),
            format!("{base}/static/app.js"),
        ],
    ];
    if logs_in {
        script.push(vec![
            "-X".into(),
            "POST".into(),
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            format!("{{\"username\":\"{DEMO_USER}\",\"password\":\"{DEMO_PASSWORD}\"}}"),
            format!("{base}/api/v1/login"),
        ]);
    }
    let mut page = 1 + rng.below(3) as u32;
    while script.len() < BENIGN_MAX_REQUESTS {
        match rng.below(10) {
            0..=3 => {
                script.push(vec![format!(
                    "{base}/api/v1/customers?page={page}&size={PAGE_SIZE}"
                )]);
                page = page % CUSTOMERS.div_ceil(PAGE_SIZE) + 1;
            }
            4..=8 => {
                // A customer from the page just seen: a person looks at a few records.
                let id =
                    (page.saturating_sub(1)) * PAGE_SIZE + 1 + rng.below(PAGE_SIZE as usize) as u32;
                script.push(vec![format!("{base}/api/v1/customers/{id}")]);
            }
            _ => script.push(vec![format!("{base}/api/v1/health")]),
        }
    }
    let cookie = if logs_in {
        "sid=dGVtby1zZXNzaW9uLXRva2VuLWZvci13YW5nLmZhbmc"
    } else {
        "_ga=GA1.1.20261207"
    };
    for (n, args) in script.iter().enumerate() {
        if stop.load(Ordering::SeqCst) || INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
        if Instant::now() > deadline || sent as usize >= BENIGN_MAX_REQUESTS {
            break;
        }
        let mut full: Vec<&str> = vec![
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            "--interface",
            addr,
            "-A",
            ua,
            "-H",
            "Accept-Language: zh-CN,zh;q=0.9,en;q=0.8",
        ];
        let referer = format!("Referer: {base}/");
        if n > 0 {
            full.extend(["-H", &referer, "-b", cookie]);
        }
        let urls = args.iter().filter(|a| a.starts_with("http://")).count();
        for a in args {
            full.push(a);
            if a.starts_with("http://") && urls > 1 {
                full.extend(["-o", "/dev/null"]);
            }
        }
        let status = Command::new("ip")
            .args(["netns", "exec", ns, "curl"])
            .args(&full)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running curl")?;
        if !status.success() {
            bail!("benign curl from {addr} failed ({status})");
        }
        sent += urls as u64;
        // Think time: 0.3–1.5 s, checked in small steps so that a stop is prompt.
        let think = Duration::from_millis(300 + rng.below(1200) as u64);
        let until = Instant::now() + think;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(sent)
}

/// What the attack phase did, for the report.
struct Attacks {
    /// Wall-clock ms when each tool started (just before its first request).
    stuffing_start_ms: u64,
    walk_start_ms: u64,
    stuffing_attempts: usize,
    walk_requests: u32,
}

/// ffuf twice from the attacker's address (the client namespace's primary one): a user list ×
/// password list against the login (each user name twice: stuffing, not guessing one
/// account), then a sequential walk over the customer ids.
fn run_attacks(topo: &Topology, dir: &Path) -> anyhow::Result<Attacks> {
    let users: Vec<String> = (0..60)
        .map(|i| {
            let names = [
                "zhang.wei",
                "li.na",
                "liu.yang",
                "chen.jie",
                "huang.min",
                "zhao.lei",
            ];
            format!("{}{}", names[i % names.len()], 80 + i)
        })
        .collect();
    let passwords = ["Aa123456", "woaini1314"];
    crate::attacks::lab::write_lines(&dir.join("users.txt"), users.clone())?;
    crate::attacks::lab::write_lines(
        &dir.join("passwords.txt"),
        passwords.iter().map(|s| (*s).to_owned()),
    )?;
    let url = |p: &str| format!("http://{SERVER_IP}:{SERVER_PORT}{p}");
    step(&format!(
        "attack 1/2 from {CLIENT_IP}: ffuf credential stuffing on POST /api/v1/login \
         ({} user names × {} leaked passwords)",
        users.len(),
        passwords.len()
    ));
    let stuffing_start_ms = now_ms();
    run_tool(
        &topo.client,
        dir,
        "ffuf-stuffing",
        60,
        "ffuf",
        &strings(&[
            "-s",
            "-w",
            "users.txt:USER",
            "-w",
            "passwords.txt:PASS",
            "-mode",
            "clusterbomb",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"username":"USER","password":"PASS"}"#,
            "-u",
            &url("/api/v1/login"),
            "-mc",
            "200",
            "-t",
            "4",
            "-p",
            "0.02",
            "-maxtime",
            "50",
        ]),
    )?;
    check_interrupt()?;
    sleep_checked(Duration::from_secs(3))?;
    crate::attacks::lab::write_lines(&dir.join("ids.txt"), (1..=WALK_TO).map(|i| i.to_string()))?;
    step(&format!(
        "attack 2/2 from {CLIENT_IP}: ffuf ID walk GET /api/v1/customers/FUZZ, ids 1..{WALK_TO} \
         ({CUSTOMERS} exist)"
    ));
    let walk_start_ms = now_ms();
    run_tool(
        &topo.client,
        dir,
        "ffuf-walk",
        60,
        "ffuf",
        &strings(&[
            "-s",
            "-w",
            "ids.txt",
            "-u",
            &url("/api/v1/customers/FUZZ"),
            "-mc",
            "200",
            "-t",
            "4",
            "-p",
            "0.01",
            "-maxtime",
            "50",
        ]),
    )?;
    check_interrupt()?;
    step("attacks done");
    Ok(Attacks {
        stuffing_start_ms,
        walk_start_ms,
        stuffing_attempts: users.len() * passwords.len(),
        walk_requests: WALK_TO,
    })
}

// ---- outputs -------------------------------------------------------------------------------

/// GET `/metrics` at `addr` inside `ns`.
fn metrics_at(ns: &Netns, addr: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let out = ns
        .cmd(
            "curl",
            &["-sS", "--max-time", "3", &format!("http://{addr}/metrics")],
        )
        .output()
        .context("running curl for /metrics")?;
    if !out.status.success() {
        bail!(
            "GET http://{addr}/metrics: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(apitap_tests::parse_metrics(&String::from_utf8_lossy(
        &out.stdout,
    )))
}

fn sum_prefix(m: &[(String, u64)], prefix: &str) -> u64 {
    m.iter()
        .filter(|(k, _)| k == prefix || k.starts_with(&format!("{prefix}{{")))
        .map(|(_, v)| v)
        .sum()
}

/// The alerts file's detection findings (OCSF 2004) that open a campaign (Create).
fn creates(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        // The last line may be half written while the analyzer runs.
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|a| a["class_uid"] == 2004 && a["activity_id"] == 1)
        .collect())
}

fn det<'a>(a: &'a Value, field: &str) -> &'a str {
    a["unmapped"]["apitap"][field].as_str().unwrap_or("?")
}

fn analyzer_cmd(args: &[&str]) -> anyhow::Result<String> {
    let bin = apitap_tests::workspace_bin("apitap-analyzer")?;
    let out = Command::new(&bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("running apitap-analyzer {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "apitap-analyzer {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `--check` asserts on.
/// The alert topic read back after a `--kafka` run.
struct TopicAlerts {
    messages: usize,
    file_lines: usize,
    /// Every message is the file's document at the same position, keyed by its uid.
    same: bool,
    /// The `apitap-alert-format` header of the first message.
    format: String,
}

const ALERT_TOPIC: &str = "apitap.alerts.v1";

fn read_alert_topic(broker: &Broker, alerts_file: &Path) -> anyhow::Result<TopicAlerts> {
    let file: Vec<Value> = std::fs::read_to_string(alerts_file)
        .with_context(|| format!("reading {}", alerts_file.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("alerts file lines are JSON")?;
    let got = broker.read_json_messages(ALERT_TOPIC, file.len(), Duration::from_secs(30))?;
    let same = got.len() == file.len()
        && got.iter().zip(&file).all(|((key, _, doc), f)| {
            doc == f
                && (key == doc["finding_info"]["uid"].as_str().unwrap_or("")
                    || key == doc["metadata"]["uid"].as_str().unwrap_or(""))
        });
    Ok(TopicAlerts {
        messages: got.len(),
        file_lines: file.len(),
        same,
        format: got.first().map(|m| m.1.clone()).unwrap_or_default(),
    })
}

struct Report {
    /// `--kafka`: the alert topic compared with the alerts file.
    topic: Option<TopicAlerts>,
    customer_template: Option<String>,
    /// (label, field) pairs of the customer endpoint's data map.
    customer_labels: Vec<(String, String)>,
    detections: Vec<Value>,
    ocsf_problems: Vec<String>,
    /// The server's workload as the shown alert's sample evidence names it.
    served_by: Option<String>,
    sensor_events: u64,
    analyzer_events: u64,
    /// Requests in nginx's access log.
    served: u64,
}

/// `apitap-analyzer inventory show --format table` of endpoint `id`: its summary line and
/// field-level data map.
fn show_table(store: &str, id: &str) -> anyhow::Result<String> {
    analyzer_cmd(&[
        "inventory",
        "show",
        "--store",
        store,
        "--format",
        "table",
        id,
    ])
}

fn print_results(
    out: &Outputs,
    attacks: &Attacks,
    served: u64,
    sensor: &[(String, u64)],
    analyzer: &[(String, u64)],
) -> anyhow::Result<Report> {
    println!("\n== API inventory (apitap-analyzer inventory list --format table) ==");
    print!(
        "{}",
        analyzer_cmd(&[
            "inventory",
            "list",
            "--store",
            &out.store,
            "--format",
            "table"
        ])?
    );

    let rows: Vec<Value> = serde_json::from_str(&analyzer_cmd(&[
        "inventory",
        "list",
        "--store",
        &out.store,
        "--format",
        "json",
    ])?)
    .context("parsing inventory list --format json")?;
    let customer = rows.iter().find(|r| {
        r["method"] == "GET"
            && r["template"]
                .as_str()
                .is_some_and(|t| t.starts_with("/api/v1/customers/{"))
    });
    let mut customer_labels = Vec::new();
    let customer_template = customer.and_then(|c| c["template"].as_str().map(str::to_owned));
    match customer {
        Some(c) => {
            let id = c["id"].as_str().unwrap_or_default();
            println!(
                "\n== data map of GET {} (apitap-analyzer inventory show --format table) ==",
                customer_template.as_deref().unwrap_or("?")
            );
            print!("{}", show_table(&out.store, id)?);
            for l in c["data_labels"].as_array().into_iter().flatten() {
                customer_labels.push((
                    l["label"].as_str().unwrap_or_default().to_owned(),
                    l["field"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        None => println!("\n(no templated GET /api/v1/customers/{{…}} endpoint in the store)"),
    }
    // The list masks what the application masks: the data map records the mask's shape.
    if let Some(list) = rows
        .iter()
        .find(|r| r["method"] == "GET" && r["template"] == "/api/v1/customers")
    {
        println!(
            "\n== data map of GET /api/v1/customers (the paged list; the application masks) =="
        );
        let table = show_table(&out.store, list["id"].as_str().unwrap_or_default())?;
        // Only the data map: the summary line is in the inventory table above.
        let map: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("DIRECTION"))
            .take_while(|l| !l.is_empty())
            .collect();
        println!("{}", map.join("\n"));
    }

    let text = std::fs::read_to_string(&out.alerts).unwrap_or_default();
    let all: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let detections: Vec<Value> = all
        .iter()
        .filter(|a| a["class_uid"] == 2004 && a["activity_id"] == 1)
        .cloned()
        .collect();
    let mut by_class: BTreeMap<String, usize> = BTreeMap::new();
    for a in &all {
        *by_class
            .entry(format!(
                "{} {}",
                a["class_uid"],
                a["class_name"].as_str().unwrap_or("?")
            ))
            .or_default() += 1;
    }
    println!(
        "\n== detections raised (OCSF Detection Finding, Create; {} alerts in {}: {}) ==",
        all.len(),
        out.alerts.display(),
        by_class
            .iter()
            .map(|(k, v)| format!("{v} × {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<31} {:<9} {:<11} {:<14} {:<6} {:<36} {:>6} {:>8}",
        "DETECTOR/KIND", "SEVERITY", "ACTOR IP", "NETWORK", "UA", "ENDPOINT", "EVENTS", "LATENCY"
    );
    for a in &detections {
        let detector = det(a, "detector");
        let start = match detector {
            "enumeration" => attacks.walk_start_ms,
            _ => attacks.stuffing_start_ms,
        };
        let time = a["time"].as_u64().unwrap_or(0);
        let actor = actor_fields(a);
        println!(
            "{:<31} {:<9} {:<11} {:<14} {:<6} {:<36} {:>6} {:>7.1}s",
            format!("{detector}/{}", det(a, "kind")),
            a["severity"].as_str().unwrap_or("?"),
            actor.ip,
            actor.network,
            actor.ua,
            endpoint_of(a),
            a["count"].as_u64().unwrap_or(0),
            time.saturating_sub(start) as f64 / 1000.0
        );
    }
    println!(
        "(latency: the finding's `time` minus the wall-clock start of the ffuf run that caused it; \
         stuffing: {} attempts, walk: {} requests)",
        attacks.stuffing_attempts, attacks.walk_requests
    );

    println!("\n== the same run's other findings (weak points, inventory changes) ==");
    let mut other: BTreeMap<(u64, String, String), usize> = BTreeMap::new();
    for a in all.iter().filter(|a| a["class_uid"] != 2004) {
        let title = a["finding_info"]["title"].as_str().unwrap_or("?");
        // Inventory changes grouped by kind (the title up to the endpoint); weak points one
        // by one.
        let title = match title.find(" GET ").or(title.find(" POST ")) {
            Some(at) if a["class_uid"] == 2007 => title[..at]
                .trim_end_matches(" on")
                .trim_end_matches(" to")
                .trim_end_matches(':')
                .to_owned(),
            _ => title.to_owned(),
        };
        *other
            .entry((
                a["class_uid"].as_u64().unwrap_or(0),
                a["severity"].as_str().unwrap_or("?").to_owned(),
                title,
            ))
            .or_default() += 1;
    }
    for ((class, severity, title), n) in &other {
        println!("{class}  {severity:<13} {n:>3} × {title}");
    }

    let mut ocsf_problems = Vec::new();
    let mut served_by = None;
    if let Some(a) = detections
        .iter()
        .find(|a| det(a, "detector") == "credential_stuffing")
        .or(detections.first())
    {
        println!(
            "\n== one alert in full (OCSF {} {}, as the analyzer wrote it) ==",
            a["class_uid"],
            a["class_name"].as_str().unwrap_or("")
        );
        println!("{}", serde_json::to_string_pretty(a)?);
        served_by = served_by_of(a);
        match &served_by {
            Some(w) => {
                println!("served by (the sensor's attribution, in the alert's evidence): {w}")
            }
            None => println!("served by: not in the alert (attribution off?)"),
        }
        ocsf_problems = ocsf_shape_problems(a);
        // And the product's validator against the vendored OCSF schema.
        if let Err(e) = apitap_detect::ocsf::validate(a) {
            ocsf_problems.extend(e);
        }
    } else {
        ocsf_problems.push("no detection finding to show".into());
    }

    let sensor_events = sum_prefix(sensor, "apitap_sensor_events_total");
    println!("\n== counters (/metrics; nginx logged {served} requests) ==");
    println!(
        "sensor:   {} packets, {} records, {} events, {} kernel drops, {} bus drops",
        sum_prefix(sensor, "apitap_kernel_packets_total"),
        sum_prefix(sensor, "apitap_kernel_records_total"),
        sensor_events,
        sum_prefix(sensor, "apitap_kernel_dropped_packets_total"),
        sum_prefix(sensor, "apitap_bus_events_dropped_total"),
    );
    println!(
        "analyzer: {} events, {} detection findings ({} created), {} weak-point findings, {} inventory events",
        sum_prefix(analyzer, "apitap_analyzer_events_total"),
        sum_prefix(analyzer, "apitap_detect_findings_total"),
        analyzer
            .iter()
            .find(|(k, _)| k == "apitap_detect_findings_total{activity=\"create\"}")
            .map_or(0, |m| m.1),
        sum_prefix(analyzer, "apitap_weak_points_total"),
        sum_prefix(analyzer, "apitap_inventory_events_total"),
    );
    Ok(Report {
        topic: None,
        customer_template,
        customer_labels,
        detections,
        ocsf_problems,
        served_by,
        sensor_events,
        analyzer_events: sum_prefix(analyzer, "apitap_analyzer_events_total"),
        served,
    })
}

struct Actor {
    ip: String,
    network: String,
    ua: String,
}

/// The actor as the finding names it (`unmapped.apitap.actor`): its IP, network and
/// User-Agent family; a campaign of several sources names its networks instead.
fn actor_fields(a: &Value) -> Actor {
    let ap = &a["unmapped"]["apitap"];
    let key = |k: &str| ap["actor"][k].as_str().map(str::to_owned);
    let ip = key("client_ip").unwrap_or_else(|| "-".into());
    let network = key("subnet")
        .or_else(|| ap["networks"][0]["network"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into());
    let ua = key("user_agent_family").unwrap_or_else(|| "-".into());
    Actor { ip, network, ua }
}

fn endpoint_of(a: &Value) -> String {
    let ep = &a["unmapped"]["apitap"]["endpoint"];
    match ep {
        Value::String(s) => s.clone(),
        Value::Object(_) => format!(
            "{} {}",
            ep["method"].as_str().unwrap_or(""),
            ep["template"]
                .as_str()
                .or(ep["path"].as_str())
                .unwrap_or("")
        )
        .trim()
        .to_owned(),
        _ => a["resources"][0]["name"].as_str().unwrap_or("-").to_owned(),
    }
}

/// The OCSF 1.x Detection Finding attributes a SIEM needs, checked independently of the
/// product's own validator: class, category, type_uid arithmetic, times, finding_info.
fn ocsf_shape_problems(a: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if a["class_uid"] != 2004 {
        p.push("class_uid is not 2004".into());
    }
    if a["category_uid"] != 2 {
        p.push("category_uid is not 2".into());
    }
    let (class, activity) = (
        a["class_uid"].as_u64().unwrap_or(0),
        a["activity_id"].as_u64().unwrap_or(0),
    );
    if a["type_uid"].as_u64() != Some(class * 100 + activity) {
        p.push("type_uid ≠ class_uid × 100 + activity_id".into());
    }
    for f in ["time", "severity_id", "activity_id"] {
        if !a[f].is_u64() {
            p.push(format!("{f} is not an integer"));
        }
    }
    if !a["metadata"]["version"]
        .as_str()
        .is_some_and(|v| v.starts_with("1."))
    {
        p.push("metadata.version is not 1.x".into());
    }
    if !a["metadata"]["product"]["name"].is_string() {
        p.push("metadata.product.name missing".into());
    }
    for f in ["uid", "title"] {
        if !a["finding_info"][f].is_string() {
            p.push(format!("finding_info.{f} missing"));
        }
    }
    p
}

/// The systemd unit the demo's nginx runs in (a cgroup of that name).
const DEMO_UNIT: &str = "shop-api.service";

/// `unit (processes)` of the first sample evidence's `data.server_workload`.
fn served_by_of(alert: &Value) -> Option<String> {
    let w = alert["evidences"]
        .as_array()?
        .iter()
        .find_map(|e| e["data"]["server_workload"].as_object())?;
    let unit = w.get("unit").and_then(Value::as_str).unwrap_or("?");
    let procs: Vec<&str> = w
        .get("processes")
        .and_then(Value::as_array)
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Some(format!("{unit} ({})", procs.join(", ")))
}

fn check(r: &Report) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    if !r
        .served_by
        .as_deref()
        .is_some_and(|w| w.starts_with(DEMO_UNIT) && w.contains("nginx"))
    {
        failures.push(format!(
            "the alert does not name the serving unit {DEMO_UNIT} with its nginx processes: {:?}",
            r.served_by
        ));
    }
    if r.sensor_events != r.served || r.analyzer_events != r.served {
        failures.push(format!(
            "nginx logged {} requests; the sensor made {} events, the analyzer took {}",
            r.served, r.sensor_events, r.analyzer_events
        ));
    }
    match &r.customer_template {
        Some(t) => {
            for label in ["prc_id", "mobile"] {
                let named = r
                    .customer_labels
                    .iter()
                    .any(|(l, f)| l == label && !f.is_empty() && f != "$");
                if !named {
                    failures.push(format!(
                        "{t}: data map has no named field labelled {label}: {:?}",
                        r.customer_labels
                    ));
                }
            }
        }
        None => failures.push("no templated GET /api/v1/customers/{…} endpoint".into()),
    }
    for want in [
        &["credential_stuffing", "brute_force"][..],
        &["enumeration"][..],
    ] {
        let hit = r
            .detections
            .iter()
            .find(|a| want.contains(&det(a, "detector")));
        match hit {
            None => failures.push(format!("no {} detection", want.join(" or "))),
            Some(a) if actor_fields(a).ip != CLIENT_IP => failures.push(format!(
                "{} names {} as the actor, not the attacker {CLIENT_IP}",
                det(a, "detector"),
                actor_fields(a).ip
            )),
            Some(_) => {}
        }
    }
    if r.detections.iter().any(|a| {
        BENIGN
            .iter()
            .any(|(addr, _, _)| actor_fields(a).ip == *addr)
    }) {
        failures.push("a detection names a benign user".into());
    }
    failures.extend(r.ocsf_problems.iter().map(|p| format!("OCSF: {p}")));
    if let Some(t) = &r.topic
        && !(t.same && t.messages > 0)
    {
        failures.push(format!(
            "alert topic {ALERT_TOPIC}: {} messages for {} alert lines, same documents: {}",
            t.messages, t.file_lines, t.same
        ));
    }
    if failures.is_empty() {
        return Ok(());
    }
    bail!("demo check failed:\n  {}", failures.join("\n  "))
}
