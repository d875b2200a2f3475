//! The scenarios: which tool or benign client runs against the lab, with which word
//! lists, and what each is expected to raise.

use super::*;

/// What a scenario is expected to raise (the golden alert tests read this from the manifest).
pub(crate) struct Expect {
    pub(crate) detector: &'static str,
    /// Primary actor key and value; `alt` lists other acceptable (key, value) pairs.
    pub(crate) actor_key: &'static str,
    pub(crate) actor: &'static str,
    pub(crate) alt: &'static [(&'static str, &'static str)],
}

/// One scenario of the evaluation.
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    /// Extra server arguments (e.g. `--authz strict`).
    pub(crate) server_args: &'static [&'static str],
    pub(crate) expect: Expect,
    /// Benign background sessions around the attack (0 for the benign scenario itself).
    pub(crate) background: usize,
    pub(crate) traffic: fn(&Lab, &Opts) -> anyhow::Result<Attack>,
}

/// Run-time knobs (the live demo shortens the benign scenario).
#[derive(Clone, Copy)]
pub(crate) struct Opts {
    pub(crate) benign_seconds: u64,
}

/// What the traffic function did.
pub(crate) struct Attack {
    pub(crate) tool: &'static str,
    /// Debian package of the tool (for its version).
    pub(crate) package: &'static str,
    pub(crate) command: String,
    pub(crate) attackers: Vec<String>,
    pub(crate) benign: Vec<String>,
    pub(crate) notes: String,
}

impl Attack {
    /// A run by the one attacker host, with no benign clients beside it.
    pub(crate) fn by_attacker(
        tool: &'static str,
        package: &'static str,
        command: String,
        notes: impl Into<String>,
    ) -> Attack {
        Attack {
            tool,
            package,
            command,
            attackers: vec![ATTACKER.into()],
            benign: Vec::new(),
            notes: notes.into(),
        }
    }
}

pub(crate) const SCENARIOS: &[Spec] = &[
    Spec {
        name: "stuffing_hydra_form",
        description: "Credential stuffing against the HTML login form: hydra http-post-form with a leaked combo list (one attempt per username, a few reused passwords succeed).",
        server_args: &[],
        expect: Expect {
            detector: "credential_stuffing",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("subnet", "10.213.0.0/24")],
        },
        background: BACKGROUND_ADDRS,
        traffic: stuffing_hydra_form,
    },
    Spec {
        name: "brute_hydra_basic",
        description: "Password cracking of one account over HTTP Basic auth: hydra http-get with John's password list; succeeds at the account's password and stops (-f).",
        server_args: &[],
        expect: Expect {
            detector: "brute_force",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("account", "alice")],
        },
        background: BACKGROUND_ADDRS,
        traffic: brute_hydra_basic,
    },
    Spec {
        name: "stuffing_ffuf_json",
        description: "Credential stuffing against the JSON login API: ffuf pitchfork over username and password lists, POST application/json.",
        server_args: &[],
        expect: Expect {
            detector: "credential_stuffing",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[
                ("subnet", "10.213.0.0/24"),
                ("fingerprint", "Fuzz Faster U Fool"),
            ],
        },
        background: BACKGROUND_ADDRS,
        traffic: stuffing_ffuf_json,
    },
    Spec {
        name: "brute_patator_json",
        description: "Password cracking of one account on the JSON login API: patator http_fuzz with John's password list (no success).",
        server_args: &[],
        expect: Expect {
            detector: "brute_force",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("account", "bob")],
        },
        background: BACKGROUND_ADDRS,
        traffic: brute_patator_json,
    },
    Spec {
        name: "stuffing_distributed",
        description: "Distributed low-and-slow credential stuffing: 60 source addresses in one /24, 3-5 JSON login attempts each (curl, one campaign, one attempt per username).",
        server_args: &[],
        expect: Expect {
            detector: "credential_stuffing",
            actor_key: "subnet",
            actor: "10.213.1.0/24",
            alt: &[("fingerprint", "curl")],
        },
        background: BACKGROUND_ADDRS,
        traffic: stuffing_distributed,
    },
    Spec {
        name: "otp_guessing",
        description: "SMS code guessing: one OTP send, then wfuzz over 500 six-digit codes on /api/otp/verify (no success).",
        server_args: &[],
        expect: Expect {
            detector: "otp_guessing",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[],
        },
        background: BACKGROUND_ADDRS,
        traffic: otp_guessing,
    },
    Spec {
        name: "enum_ffuf",
        description: "BOLA enumeration: a logged-in account walks /api/users/1..2000 with ffuf; the server does not check ownership (1000 × 200 with PII, 1000 × 404).",
        server_args: &[],
        expect: Expect {
            detector: "enumeration",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("account", "bob")],
        },
        background: BACKGROUND_ADDRS,
        traffic: enum_ffuf,
    },
    Spec {
        name: "enum_wfuzz",
        description: "Enumeration against an ownership-checking server (--authz strict): wfuzz over /api/users/1..1200 (403 for others' ids, 404 beyond).",
        server_args: &["--authz", "strict"],
        expect: Expect {
            detector: "enumeration",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("account", "alice")],
        },
        background: BACKGROUND_ADDRS,
        traffic: enum_wfuzz,
    },
    Spec {
        name: "crawl_wget",
        description: "Crawling/scraping the site: wget --mirror bounded by depth and quota (robots.txt honoured).",
        server_args: &[],
        expect: Expect {
            detector: "crawling",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("fingerprint", "Wget")],
        },
        background: BACKGROUND_ADDRS,
        traffic: crawl_wget,
    },
    Spec {
        name: "crawl_gobuster",
        description: "Forced browsing: gobuster dir with dirb's common.txt word list (mostly 404).",
        server_args: &[],
        expect: Expect {
            detector: "crawling",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("fingerprint", "gobuster")],
        },
        background: BACKGROUND_ADDRS,
        traffic: crawl_gobuster,
    },
    Spec {
        name: "crawl_distributed",
        description: "Distributed crawling: one wget fleet from 24 source addresses in one /24; a coordinator fetches the site's index pages, the links found are dealt round-robin, each address fetches its 6-7 pages (wget -i, 1 s apart), every address under the per-source thresholds, the fleet (one Wget fingerprint) over the distributed ones.",
        server_args: &[],
        expect: Expect {
            detector: "crawling",
            actor_key: "fingerprint",
            actor: "Wget",
            alt: &[("subnet", "10.213.1.0/24")],
        },
        background: BACKGROUND_ADDRS,
        traffic: crawl_distributed,
    },
    Spec {
        name: "bulk_export",
        description: "Abnormal data access (bulk export): one account pulls all 1000 user records with PII through /api/export in 20 pages (curl URL globbing); benign users export one record now and then.",
        server_args: &[],
        expect: Expect {
            detector: "abnormal_access",
            actor_key: "account",
            actor: "bob",
            alt: &[("ip", ATTACKER)],
        },
        background: BACKGROUND_ADDRS,
        traffic: bulk_export,
    },
    Spec {
        name: "benign_10min",
        description: "Benign only: 10 minutes of scripted user sessions from 20 addresses (login, profile, orders, logout, think times, OTP logins, an occasional typo) plus light siege and wrk bursts.",
        server_args: &[],
        expect: Expect {
            detector: "none",
            actor_key: "none",
            actor: "",
            alt: &[],
        },
        background: 0,
        traffic: benign,
    },
];

/// Tools the scenarios run: (program or file that proves presence, Debian package).
pub(crate) const TOOLS: &[(&str, &str)] = &[
    ("hydra", "hydra"),
    ("ffuf", "ffuf"),
    ("wfuzz", "wfuzz"),
    ("patator", "patator"),
    ("gobuster", "gobuster"),
    ("/usr/share/dirb/wordlists/common.txt", "dirb"),
    ("/usr/share/john/password.lst", "john-data"),
    ("wget", "wget"),
    ("curl", "curl"),
    ("siege", "siege"),
    ("wrk", "wrk"),
    ("dumpcap", "tshark"),
    ("tshark", "tshark"),
    ("gzip", "gzip"),
    ("timeout", "coreutils"),
];

/// Installs the attack and load tools when missing. Recording and the live demo only: CI
/// replays the recorded pcaps and needs none of them.
pub fn install_tools() -> anyhow::Result<()> {
    crate::setup::install_tools(TOOLS, "for the attack recordings and demo").map(drop)
}

pub(crate) fn stuffing_hydra_form(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let accts = accounts()?;
    let list = combo(&accts, 11, 320, 4, "test");
    write_lines(
        &lab.dir.join("combo.txt"),
        list.iter().map(|(u, p)| format!("{u}:{p}")),
    )?;
    let args = strings(&[
        "-I",
        "-C",
        "combo.txt",
        "-t",
        "4",
        "-s",
        &SERVER_PORT.to_string(),
        SERVER_IP,
        "http-post-form",
        "/login:username=^USER^&password=^PASS^:F=Login failed",
    ]);
    let command = lab.tool("hydra", 300, "hydra", &args)?;
    Ok(Attack::by_attacker(
        "hydra",
        "hydra",
        command,
        "combo.txt: 320 username:password pairs, each username once, 240 real accounts (4 with their real password), 80 unknown",
    ))
}

pub(crate) fn brute_hydra_basic(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    write_lines(&lab.dir.join("passwords.txt"), john_passwords(400)?)?;
    let args = strings(&[
        "-I",
        "-f",
        "-l",
        "alice",
        "-P",
        "passwords.txt",
        "-t",
        "4",
        "-s",
        &SERVER_PORT.to_string(),
        SERVER_IP,
        "http-get",
        "/basic/",
    ]);
    let command = lab.tool("hydra", 300, "hydra", &args)?;
    Ok(Attack::by_attacker(
        "hydra",
        "hydra",
        command,
        "passwords.txt: first 400 entries of /usr/share/john/password.lst; alice's password is entry 109, hydra stops there (-f)",
    ))
}

pub(crate) fn stuffing_ffuf_json(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let accts = accounts()?;
    let list = combo(&accts, 23, 300, 3, "user");
    write_lines(&lab.dir.join("users.txt"), list.iter().map(|c| c.0.clone()))?;
    write_lines(
        &lab.dir.join("passwords.txt"),
        list.iter().map(|c| c.1.clone()),
    )?;
    let args = strings(&[
        "-s",
        "-w",
        "users.txt:USER",
        "-w",
        "passwords.txt:PASS",
        "-mode",
        "pitchfork",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"username":"USER","password":"PASS"}"#,
        "-u",
        &lab.url("/api/login"),
        "-mc",
        "200",
        "-t",
        "8",
    ]);
    let command = lab.tool("ffuf", 300, "ffuf", &args)?;
    Ok(Attack::by_attacker(
        "ffuf",
        "ffuf",
        command,
        "users.txt/passwords.txt: 300 pairs (pitchfork), each username once, 225 real accounts (3 with their real password), 75 unknown",
    ))
}

pub(crate) fn brute_patator_json(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    write_lines(&lab.dir.join("passwords.txt"), john_passwords(400)?)?;
    let args = strings(&[
        "http_fuzz",
        &format!("url={}", lab.url("/api/login")),
        "method=POST",
        "header=Content-Type: application/json",
        r#"body={"username":"bob","password":"FILE0"}"#,
        // A JSON body, not form fields to URL-encode.
        "auto_urlencode=0",
        "0=passwords.txt",
        // patator 0.9 with Debian's pycurl rejects its own empty default (`resolve=''`).
        &format!("resolve={SERVER_IP}:{SERVER_IP}"),
        "-x",
        "ignore:code=401",
        "--threads=4",
    ]);
    let command = lab.tool("patator", 300, "patator", &args)?;
    Ok(Attack::by_attacker(
        "patator",
        "patator",
        command,
        "passwords.txt: first 400 entries of /usr/share/john/password.lst; bob's password is not among them",
    ))
}

pub(crate) fn stuffing_distributed(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let accts = accounts()?;
    let addrs = distributed_addrs();
    let attempts: Vec<usize> = (0..addrs.len()).map(|i| 3 + i * 7 % 3).collect();
    let total: usize = attempts.iter().sum();
    let list = combo(&accts, 37, total, 3, "cn");
    let mut it = list.iter();
    let mut first = String::new();
    let started = Instant::now();
    for (i, (addr, n)) in addrs.iter().zip(&attempts).enumerate() {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("distributed campaign exceeded its 300 s bound");
        }
        let mut args: Vec<String> = Vec::new();
        for k in 0..*n {
            let Some((u, p)) = it.next() else { break };
            if k > 0 {
                args.push("--next".into());
            }
            args.extend(strings(&[
                "-sS",
                "-o",
                "/dev/null",
                "--interface",
                addr,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &json!({"username": u, "password": p}).to_string(),
                &lab.url("/api/login"),
            ]));
        }
        let line = lab.tool(&format!("curl-{i}"), 30, "curl", &args)?;
        if first.is_empty() {
            first = line;
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    Ok(Attack {
        tool: "curl",
        package: "curl",
        command: format!(
            "{first}   # the first of 60 such runs, one per source address 10.213.1.1-60, 1 s apart, 3-5 attempts each (--next)"
        ),
        attackers: addrs,
        benign: Vec::new(),
        notes: format!(
            "{total} attempts over 60 addresses, each username once, 3 real passwords among them"
        ),
    })
}

pub(crate) fn otp_guessing(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let accts = accounts()?;
    let victim = accts
        .iter()
        .find(|a| a.id == 77)
        .context("account 77 missing")?;
    let body = json!({"phone": victim.phone}).to_string();
    lab.curl(
        ATTACKER,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &lab.url("/api/otp/send"),
        ],
    )?;
    let args = strings(&[
        "-c",
        "-t",
        "5",
        "-z",
        "range,100000-100499",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!(r#"{{"phone":"{}","code":"FUZZ"}}"#, victim.phone),
        "--hc",
        "401",
        &lab.url("/api/otp/verify"),
    ]);
    let command = lab.tool("wfuzz", 300, "wfuzz", &args)?;
    Ok(Attack::by_attacker(
        "wfuzz",
        "wfuzz",
        command,
        format!(
            "one POST /api/otp/send for {} first (curl), then 500 codes; the real code is not among them",
            victim.phone
        ),
    ))
}

pub(crate) fn enum_ffuf(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let token = lab.login(ATTACKER, "bob", "River2024!")?;
    write_lines(&lab.dir.join("ids.txt"), (1..=2000).map(|i| i.to_string()))?;
    let args = strings(&[
        "-s",
        "-w",
        "ids.txt",
        "-u",
        &lab.url("/api/users/FUZZ"),
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-mc",
        "200",
        "-t",
        "10",
    ]);
    let command = lab
        .tool("ffuf", 300, "ffuf", &args)?
        .replace(&token, "$TOKEN");
    Ok(Attack::by_attacker(
        "ffuf",
        "ffuf",
        command,
        "bob logs in first (curl POST /api/login; $TOKEN is his JWT), then ids 1..2000",
    ))
}

pub(crate) fn enum_wfuzz(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let token = lab.login(ATTACKER, "alice", "sunshine")?;
    let args = strings(&[
        "-c",
        "-t",
        "5",
        "-z",
        "range,1-1200",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "--hc",
        "404",
        &lab.url("/api/users/FUZZ"),
    ]);
    let command = lab
        .tool("wfuzz", 300, "wfuzz", &args)?
        .replace(&token, "$TOKEN");
    Ok(Attack::by_attacker(
        "wfuzz",
        "wfuzz",
        command,
        "alice logs in first (curl POST /api/login; $TOKEN is her JWT); server runs with --authz strict",
    ))
}

pub(crate) fn crawl_wget(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let args = strings(&[
        "--mirror",
        "-l",
        "3",
        "--quota=5m",
        "--no-verbose",
        "-P",
        "mirror",
        &lab.url("/"),
    ]);
    let command = lab.tool("wget", 300, "wget", &args)?;
    Ok(Attack::by_attacker(
        "wget",
        "wget",
        command,
        "the whole site: /, robots.txt, /docs/, /products/ and 150 product pages",
    ))
}

pub(crate) fn crawl_gobuster(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let args = strings(&[
        "dir",
        "-q",
        "--no-error",
        "-t",
        "10",
        "-u",
        &lab.url("/"),
        "-w",
        "/usr/share/dirb/wordlists/common.txt",
        "-o",
        "gobuster.txt",
    ]);
    let command = lab.tool("gobuster", 300, "gobuster", &args)?;
    Ok(Attack::by_attacker(
        "gobuster",
        "gobuster",
        command,
        "dirb's common.txt (4614 words); gobuster first probes a random path for wildcard answers",
    ))
}

/// Source addresses of the distributed crawl (the first of [`distributed_addrs`]).
const CRAWL_SOURCES: usize = 24;

/// Index pages the distributed crawl's coordinator fetches to find the site's links.
const CRAWL_SEEDS: &[&str] = &["/", "/products/", "/docs/"];

/// The site paths `href`ed in `html` (`href="/…"`), in order of first appearance, each once.
fn site_links(html: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in html.split("href=\"").skip(1) {
        let Some(end) = part.find('"') else { continue };
        let link = &part[..end];
        if link.starts_with('/') && !out.iter().any(|l| l == link) {
            out.push(link.to_owned());
        }
    }
    out
}

/// Distributed crawling, sized against the detector's defaults (`detect/src/detections/
/// crawling.rs`, 60 s window): each address stays far under the per-source floors (120
/// requests and 60 distinct paths, or robots.txt and 40 linked pages — `wget -i` never
/// fetches robots.txt) while the fleet, one Wget fingerprint, passes the distributed ones
/// (≥ 5 sources, ≥ 120 requests over ≥ 60 distinct paths in one window, under 120 per
/// source on average).
pub(crate) fn crawl_distributed(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let addrs: Vec<String> = distributed_addrs()
        .into_iter()
        .take(CRAWL_SOURCES)
        .collect();
    let coordinator = addrs.first().context("no distributed addresses")?.clone();
    let started = Instant::now();
    // The coordinator reads the index pages; their links are the crawl's frontier.
    write_lines(
        &lab.dir.join("seeds.txt"),
        CRAWL_SEEDS.iter().map(|p| lab.url(p)),
    )?;
    let seed_args = strings(&[
        "--no-verbose",
        &format!("--bind-address={coordinator}"),
        "-O",
        "seeds.html",
        "-i",
        "seeds.txt",
    ]);
    let seed_line = lab.tool("wget-seeds", 60, "wget", &seed_args)?;
    let html = std::fs::read_to_string(lab.dir.join("seeds.html")).context("seeds.html")?;
    let frontier: Vec<String> = site_links(&html)
        .into_iter()
        .filter(|l| !CRAWL_SEEDS.contains(&l.as_str()))
        .collect();
    if frontier.len() < 120 {
        bail!(
            "the index pages link only {} pages; see {}",
            frontier.len(),
            lab.dir.display()
        );
    }
    // Dealt round-robin: address k fetches links k, k + 24, k + 48, …
    let mut slices: Vec<Vec<String>> = vec![Vec::new(); addrs.len()];
    for (i, link) in frontier.iter().enumerate() {
        slices[i % addrs.len()].push(lab.url(link));
    }
    for (k, slice) in slices.iter().enumerate() {
        write_lines(
            &lab.dir.join(format!("slice-{k:02}.txt")),
            slice.iter().cloned(),
        )?;
    }
    // One wget per address, started 1 s apart, running side by side; each bounded by its
    // slice (≤ 7 URLs) and 60 s.
    let lines: Vec<anyhow::Result<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = addrs
            .iter()
            .enumerate()
            .map(|(k, addr)| {
                scope.spawn(move || {
                    std::thread::sleep(Duration::from_secs(k as u64));
                    let args = strings(&[
                        "--no-verbose",
                        &format!("--bind-address={addr}"),
                        "--wait=1",
                        "--random-wait",
                        "-P",
                        &format!("mirror/{k:02}"),
                        "-i",
                        &format!("slice-{k:02}.txt"),
                    ]);
                    lab.tool(&format!("wget-{k:02}"), 60, "wget", &args)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a wget thread panicked")))
            })
            .collect()
    });
    let mut first = String::new();
    for line in lines {
        let line = line?;
        if first.is_empty() {
            first = line;
        }
    }
    if started.elapsed() > Duration::from_secs(120) {
        bail!("the distributed crawl exceeded its 120 s bound");
    }
    let per: Vec<usize> = slices.iter().map(Vec::len).collect();
    let (lo, hi) = (
        per.iter().copied().min().unwrap_or(0),
        per.iter().copied().max().unwrap_or(0),
    );
    Ok(Attack {
        tool: "wget",
        package: "wget",
        command: format!(
            "{seed_line}; then {first}   # the first of {n} such runs, one per source address 10.213.1.1-{n}, started 1 s apart and running side by side, each with its slice-NN.txt",
            n = addrs.len()
        ),
        attackers: addrs,
        benign: Vec::new(),
        notes: format!(
            "the coordinator ({coordinator}) fetches the {seeds} index pages {seed_list:?}; the {links} site links they hold (every product, doc page, /about.html, /login) are dealt round-robin over {n} addresses, {lo}-{hi} each (slice-NN.txt), so that one address makes at most {max} requests, never fetches robots.txt and follows at most {hi} served links — under the per-source crawling floors of the detector's defaults (120 requests and 60 distinct paths per 60 s window; robots.txt and 40 linked pages) — while the fleet, one Wget fingerprint, makes {total} requests over {total} distinct paths from {n} addresses in about {secs} s: over the distributed floors (5 sources, 120 requests, 60 paths in one 60 s window, under 120 requests per source on average)",
            seeds = CRAWL_SEEDS.len(),
            seed_list = CRAWL_SEEDS,
            links = frontier.len(),
            n = slices.len(),
            max = hi + CRAWL_SEEDS.len(),
            total = frontier.len() + CRAWL_SEEDS.len(),
            secs = started.elapsed().as_secs(),
        ),
    })
}

pub(crate) fn bulk_export(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let token = lab.login(ATTACKER, "bob", "River2024!")?;
    let args = strings(&[
        "-sS",
        "-o",
        "export_#1.json",
        "-H",
        &format!("Authorization: Bearer {token}"),
        &lab.url("/api/export?from=[1-951:50]&size=50"),
    ]);
    let command = lab
        .tool("curl", 120, "curl", &args)?
        .replace(&token, "$TOKEN");
    Ok(Attack::by_attacker(
        "curl",
        "curl",
        command,
        "bob logs in first (curl POST /api/login; $TOKEN is his JWT), then 20 pages × 50 records = all 1000 accounts with ID numbers, phones, bank cards",
    ))
}

pub(crate) const SIEGE_URLS: &[&str] = &[
    "/",
    "/products/",
    "/products/3.html",
    "/products/17.html",
    "/docs/",
    "/docs/api.html",
    "/about.html",
];

pub(crate) const WRK_PACE: &str = r#"-- One connection, 50 ms between requests, stops after 150 responses (never mid-request).
local n = 0
function delay()
  return 50
end
function response(status, headers, body)
  n = n + 1
  if n >= 150 then
    wrk.thread:stop()
  end
end
"#;

pub(crate) fn benign(lab: &Lab, opts: &Opts) -> anyhow::Result<Attack> {
    let seconds = opts.benign_seconds;
    let sources = benign_addrs(20);
    write_lines(
        &lab.dir.join("urls.txt"),
        SIEGE_URLS.iter().map(|p| lab.url(p)),
    )?;
    std::fs::write(lab.dir.join("pace.lua"), WRK_PACE)?;
    let sessions = lab.sessions(&sources, seconds, 25.0, 2.5, 6000, 1)?;
    let siege_args = strings(&["-q", "-c", "2", "-r", "10", "-d", "1", "-f", "urls.txt"]);
    let wrk_args = strings(&[
        "-t1",
        "-c1",
        "-d30s",
        "-s",
        "pace.lua",
        &lab.url("/products/"),
    ]);
    let start = Instant::now();
    let mut siege_line = String::new();
    let mut wrk_line = String::new();
    // Bursts at fixed offsets (scaled to the run's length): siege at 10 %, 30 %, 50 %, 70 %,
    // 90 %, wrk at 40 % and 80 %.
    let mut plan: Vec<(u64, &str)> = vec![
        (seconds / 10, "siege"),
        (seconds * 3 / 10, "siege"),
        (seconds * 4 / 10, "wrk"),
        (seconds / 2, "siege"),
        (seconds * 7 / 10, "siege"),
        (seconds * 8 / 10, "wrk"),
        (seconds * 9 / 10, "siege"),
    ];
    plan.sort();
    for (i, (at, what)) in plan.iter().enumerate() {
        let wait = Duration::from_secs(*at).saturating_sub(start.elapsed());
        std::thread::sleep(wait);
        if *what == "siege" {
            siege_line = lab.tool(&format!("siege-{i}"), 60, "siege", &siege_args)?;
        } else {
            wrk_line = lab.tool(&format!("wrk-{i}"), 40, "wrk", &wrk_args)?;
        }
    }
    std::thread::sleep(Duration::from_secs(seconds).saturating_sub(start.elapsed()));
    sessions.stop()?;
    let mut benign_addrs = sources;
    benign_addrs.push(ATTACKER.into());
    Ok(Attack {
        tool: "sessions.py+siege+wrk",
        package: "siege",
        command: format!(
            "python3 tests/testapi/sessions.py --sources <20 addresses> --duration {seconds} --gap 25 --think 2.5 --max-requests 6000 --rng 1; {siege_line} (×5, from {ATTACKER}); {wrk_line} (×2, from {ATTACKER})"
        ),
        attackers: Vec::new(),
        benign: benign_addrs,
        notes: "benign only; siege and wrk run from the client namespace's primary address".into(),
    })
}

// ---- recording ------------------------------------------------------------------------------

/// dumpcap on the server's veth (port 8080 only), large buffer: no capture drops.
pub(crate) struct Dumpcap(Option<Child>);

impl Dumpcap {
    pub(crate) fn start(lab: &Lab, out: &Path) -> anyhow::Result<Dumpcap> {
        Dumpcap::start_on(
            &lab.topo.server,
            &lab.topo.server_if,
            SERVER_PORT,
            &lab.dir,
            out,
        )
    }

    /// dumpcap in namespace `ns` on `iface`, `tcp port <port>` only; its log goes to `dir`.
    pub(crate) fn start_on(
        ns: &apitap_tests::Netns,
        iface: &str,
        port: u16,
        dir: &Path,
        out: &Path,
    ) -> anyhow::Result<Dumpcap> {
        let _ = std::fs::remove_file(out);
        let log = std::fs::File::create(dir.join("dumpcap.log"))?;
        let child = ns
            .cmd(
                "dumpcap",
                &[
                    "-q",
                    "-B",
                    "64",
                    "-i",
                    iface,
                    "-f",
                    &format!("tcp port {port}"),
                    "-w",
                    &out.to_string_lossy(),
                ],
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting dumpcap (apt-get install tshark)")?;
        let mut cap = Dumpcap(Some(child));
        for _ in 0..100 {
            if out.metadata().is_ok_and(|m| m.len() > 0) {
                std::thread::sleep(Duration::from_millis(300));
                return Ok(cap);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(mut c) = cap.0.take() {
            kill_child(&mut c);
        }
        bail!("dumpcap did not start")
    }

    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(700));
        match self.0.take() {
            Some(mut c) => stop_child(&mut c, libc::SIGINT, Duration::from_secs(10)),
            None => Ok(()),
        }
    }
}

impl Drop for Dumpcap {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            kill_child(&mut c);
        }
    }
}

/// Runs a scenario's traffic with its benign background: warm-up, attack, tail.
pub(crate) fn run_traffic(spec: &Spec, lab: &Lab, opts: &Opts) -> anyhow::Result<Attack> {
    if spec.background == 0 {
        return (spec.traffic)(lab, opts);
    }
    let sources: Vec<String> = benign_addrs(20)
        .into_iter()
        .skip(16)
        .take(spec.background)
        .collect();
    let bg = lab.sessions(&sources, 600, 6.0, 1.0, 1500, 2)?;
    std::thread::sleep(Duration::from_secs(WARMUP_S));
    let mut attack = (spec.traffic)(lab, opts)?;
    std::thread::sleep(Duration::from_secs(TAIL_S));
    bg.stop()?;
    attack.benign = sources;
    Ok(attack)
}
