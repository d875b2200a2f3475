//! Actors (issue 7 "Actors and outcomes"): who sent a request, as several keys — client IP
//! (X-Forwarded-For / X-Real-IP only when the peer is a configured trusted proxy), its /24
//! (IPv4) or /64 (IPv6) subnet, the account (JWT `sub` decoded without verification, session
//! cookie, API key, Basic user, or the user name in a login body), the user-agent family and
//! a client fingerprint (user agent + header-name order + method). Account and user-name keys
//! are keyed hashes ([`crate::Keyer`]); raw values are never stored (R-OPS-3).
use std::collections::HashMap;
use std::hash::Hasher as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use apitap_labels::facts;
use apitap_schema::ApiEvent;
use base64::Engine as _;
use ipnet::IpNet;
use serde::Serialize;

use crate::cache::StrCache;
use crate::keys::{Domain, Keyer};

/// User-agent family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UaFamily {
    /// No User-Agent header.
    Missing,
    /// A desktop or mobile browser.
    Browser,
    /// A search-engine or monitoring bot that announces itself.
    Bot,
    /// curl.
    Curl,
    /// GNU Wget.
    Wget,
    /// Python HTTP libraries (requests, urllib, aiohttp, httpx) and Scrapy.
    Python,
    /// Go's net/http.
    Go,
    /// Java / OkHttp / Apache HttpClient.
    Java,
    /// Node.js clients (axios, node-fetch, undici).
    Node,
    /// Headless browsers (HeadlessChrome, PhantomJS).
    Headless,
    /// Website copiers (HTTrack, Teleport Pro, Offline Explorer, WebCopier, SiteSucker,
    /// WebZIP, WebStripper): they say `Mozilla … compatible` but mirror whole sites.
    Mirror,
    /// Hydra.
    Hydra,
    /// ffuf.
    Ffuf,
    /// wfuzz.
    Wfuzz,
    /// gobuster.
    Gobuster,
    /// patator.
    Patator,
    /// sqlmap.
    Sqlmap,
    /// Other scanners (nikto, nmap, nuclei, dirbuster, feroxbuster, masscan, zgrab).
    Scanner,
    /// Anything else.
    Other,
}

impl UaFamily {
    /// Parses a User-Agent value (case-insensitive substring rules; attack tools first, since
    /// some (hydra) pretend to be Mozilla).
    pub fn of(ua: Option<&str>) -> UaFamily {
        let Some(ua) = ua else {
            return UaFamily::Missing;
        };
        if ua.trim().is_empty() {
            return UaFamily::Missing;
        }
        let mut buf = [0u8; 160];
        let n = ua.len().min(buf.len());
        buf[..n].copy_from_slice(&ua.as_bytes()[..n]);
        buf[..n].make_ascii_lowercase();
        let s = &buf[..n];
        let has = |p: &str| memchr::memmem::find(s, p.as_bytes()).is_some();
        const TABLE: &[(&str, UaFamily)] = &[
            ("hydra", UaFamily::Hydra),
            ("fuzz faster u fool", UaFamily::Ffuf),
            ("ffuf", UaFamily::Ffuf),
            ("wfuzz", UaFamily::Wfuzz),
            ("gobuster", UaFamily::Gobuster),
            ("patator", UaFamily::Patator),
            ("sqlmap", UaFamily::Sqlmap),
            ("nikto", UaFamily::Scanner),
            ("nmap", UaFamily::Scanner),
            ("nuclei", UaFamily::Scanner),
            ("dirbuster", UaFamily::Scanner),
            ("feroxbuster", UaFamily::Scanner),
            ("masscan", UaFamily::Scanner),
            ("zgrab", UaFamily::Scanner),
            ("httrack", UaFamily::Mirror),
            ("teleport", UaFamily::Mirror),
            ("offline explorer", UaFamily::Mirror),
            ("webcopier", UaFamily::Mirror),
            ("sitesucker", UaFamily::Mirror),
            ("webzip", UaFamily::Mirror),
            ("webstripper", UaFamily::Mirror),
            ("headlesschrome", UaFamily::Headless),
            ("phantomjs", UaFamily::Headless),
            ("curl/", UaFamily::Curl),
            ("wget/", UaFamily::Wget),
            ("python", UaFamily::Python),
            ("aiohttp", UaFamily::Python),
            ("scrapy", UaFamily::Python),
            ("httpx", UaFamily::Python),
            ("go-http-client", UaFamily::Go),
            ("okhttp", UaFamily::Java),
            ("apache-httpclient", UaFamily::Java),
            ("java/", UaFamily::Java),
            ("axios", UaFamily::Node),
            ("node-fetch", UaFamily::Node),
            ("undici", UaFamily::Node),
            ("bot", UaFamily::Bot),
            ("spider", UaFamily::Bot),
            ("crawler", UaFamily::Bot),
        ];
        for (p, f) in TABLE {
            if has(p) {
                return *f;
            }
        }
        if s.starts_with(b"mozilla/")
            && (has("chrome") || has("firefox") || has("safari") || has("edg") || has("trident"))
        {
            return UaFamily::Browser;
        }
        UaFamily::Other
    }

    /// A browser (not headless).
    pub fn is_browser(self) -> bool {
        self == UaFamily::Browser
    }

    /// An attack or scanning tool.
    pub fn is_attack_tool(self) -> bool {
        matches!(
            self,
            UaFamily::Hydra
                | UaFamily::Ffuf
                | UaFamily::Wfuzz
                | UaFamily::Gobuster
                | UaFamily::Patator
                | UaFamily::Sqlmap
                | UaFamily::Scanner
        )
    }

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            UaFamily::Missing => "missing",
            UaFamily::Browser => "browser",
            UaFamily::Bot => "bot",
            UaFamily::Curl => "curl",
            UaFamily::Wget => "wget",
            UaFamily::Python => "python",
            UaFamily::Go => "go",
            UaFamily::Java => "java",
            UaFamily::Node => "node",
            UaFamily::Headless => "headless",
            UaFamily::Mirror => "mirror",
            UaFamily::Hydra => "hydra",
            UaFamily::Ffuf => "ffuf",
            UaFamily::Wfuzz => "wfuzz",
            UaFamily::Gobuster => "gobuster",
            UaFamily::Patator => "patator",
            UaFamily::Sqlmap => "sqlmap",
            UaFamily::Scanner => "scanner",
            UaFamily::Other => "other",
        }
    }
}

/// How the account of a request was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// JWT `sub` claim (decoded, not verified).
    JwtSub,
    /// Session cookie value.
    Session,
    /// API key header or opaque bearer token.
    ApiKey,
    /// HTTP Basic user name.
    Basic,
    /// User name in a login request body.
    LoginBody,
}

impl AccountKind {
    /// Short prefix used in rendered keys.
    pub fn name(self) -> &'static str {
        match self {
            AccountKind::JwtSub => "jwt_sub",
            AccountKind::Session => "session",
            AccountKind::ApiKey => "api_key",
            AccountKind::Basic => "basic",
            AccountKind::LoginBody => "login_user",
        }
    }
}

/// An account key: kind and keyed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Account {
    /// How it was identified.
    pub kind: AccountKind,
    /// Keyed hash.
    pub key: u64,
}

impl Account {
    /// Rendered for alerts: `jwt_sub:1a2b…` (keyed hash, never the value).
    pub fn render(&self) -> String {
        format!("{}:{:016x}", self.kind.name(), self.key)
    }
}

/// The keys of an actor that a trace-back record keeps (R-THR-6): no value, only keyed
/// hashes and the client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActorKeys {
    /// Client address (after trusted-proxy resolution).
    pub ip: IpAddr,
    /// The account, when one could be identified.
    pub account: Option<Account>,
    /// User-agent family.
    pub ua: UaFamily,
    /// Keyed hash of the exact User-Agent value (0 when missing).
    pub ua_key: u64,
}

impl ActorKeys {
    /// The keys of `actor`.
    pub fn of(actor: &Actor) -> ActorKeys {
        ActorKeys {
            ip: actor.ip,
            account: actor.account,
            ua: actor.ua,
            ua_key: actor.ua_key,
        }
    }
}

/// The actor keys of one request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Client address (after trusted-proxy resolution).
    pub ip: IpAddr,
    /// Keyed hash of the client address.
    pub ip_key: u64,
    /// /24 (IPv4) or /64 (IPv6) network of the client.
    pub subnet: IpNet,
    /// Keyed hash of the subnet.
    pub subnet_key: u64,
    /// The account, when one could be identified.
    pub account: Option<Account>,
    /// The user name attempted (login body or Basic), keyed hash.
    pub login_user: Option<u64>,
    /// User-agent family.
    pub ua: UaFamily,
    /// Keyed hash of the exact User-Agent value (0 when missing).
    pub ua_key: u64,
    /// Client fingerprint: User-Agent + header names in wire order + method.
    pub fingerprint: u64,
    /// The request had a Referer.
    pub has_referer: bool,
    /// The request had a Cookie header.
    pub has_cookie: bool,
    /// The user name tried, masked for evidence (`a****@example.com`) or as its keyed hash.
    pub login_user_masked: Option<String>,
}

/// The user name a login attempt tried (raw, for masking only; never stored or logged) and
/// its keyed hash.
#[derive(Debug)]
pub(crate) struct LoginUser {
    raw: String,
    key: u64,
}

impl LoginUser {
    /// Masked for evidence (`a****@example.com`) or as its keyed hash.
    pub(crate) fn masked(&self) -> String {
        crate::campaign::mask_username(&self.raw, self.key)
    }
}

/// Finds the first header of a name (case-insensitive): the shared lookup.
pub use apitap_labels::facts::header;

/// Subnet of an address: /24 for IPv4, /64 for IPv6 (IPv4-mapped IPv6 as IPv4).
pub fn subnet_of(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(v4) => net(IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xFFFF_FF00)), 24),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => subnet_of(IpAddr::V4(v4)),
            None => net(
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
                64,
            ),
        },
    }
}

fn net(ip: IpAddr, len: u8) -> IpNet {
    IpNet::new(ip, len).unwrap_or_else(|_| IpNet::from(ip))
}

/// Login-body fields that carry the user name.
const USER_FIELDS: &[&str] = &[
    "username",
    "user_name",
    "user",
    "login",
    "loginname",
    "login_name",
    "email",
    "mail",
    "account",
    "accountname",
    "account_name",
    "mobile",
    "phone",
    "phonenumber",
    "phone_number",
    "tel",
    "name",
    "userid",
    "user_id",
    "uid",
];

/// Entries of each resolver cache before it is cleared (bounded memory).
const CACHE_MAX: usize = 65_536;

/// User agents cached (strings up to [`crate::cache::MAX_PART`] bytes each).
const UA_CACHE_MAX: usize = 4_096;

/// Resolves the actor keys of events. Caches the user-agent key and family per User-Agent
/// value (a fast seeded hash and a compare instead of SipHash and parsing) and the JWT `sub`
/// key per token (keyed hashes); both are cleared when full.
#[derive(Debug, Clone)]
pub struct ActorResolver {
    trusted: Vec<IpNet>,
    /// User-Agent value → its keyed hash and family.
    ua_cache: StrCache<(u64, UaFamily)>,
    jwt_cache: HashMap<u64, Option<u64>, foldhash::fast::RandomState>,
}

impl ActorResolver {
    /// With the trusted proxies.
    pub fn new(trusted: Vec<IpNet>) -> ActorResolver {
        ActorResolver {
            trusted,
            ua_cache: StrCache::new(UA_CACHE_MAX),
            jwt_cache: HashMap::default(),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the peer, unless the peer is a trusted proxy; then the right-most
    /// `X-Forwarded-For` hop that is not itself trusted (RFC 7239 §5.2 practice), else
    /// `X-Real-IP`.
    pub fn client_ip(&self, ev: &ApiEvent) -> IpAddr {
        let peer = ev.client.ip;
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for h in ev
            .request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        {
            hops.extend(
                h.value
                    .split(',')
                    .filter_map(|s| s.trim().parse::<IpAddr>().ok()),
            );
        }
        // Walk from the right: the last hop not in a trusted network; left-most when all are.
        if let Some(ip) = hops.iter().rev().find(|ip| !self.is_trusted(**ip)) {
            return *ip;
        }
        if let Some(first) = hops.first() {
            return *first;
        }
        header(&ev.request.headers, "x-real-ip")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(peer)
    }

    /// All actor keys of an event. `login` says whether the request is a login / OTP attempt
    /// (then the body is read for a user name).
    pub fn resolve(&mut self, ev: &ApiEvent, keyer: &Keyer, login: bool) -> Actor {
        let facts = facts::EventFacts::new(ev, facts::DEFAULT_MAX_DECODED_BYTES);
        let (mut actor, user) = self.resolve_unmasked(&facts, keyer, login);
        actor.login_user_masked = user.map(|u| u.masked());
        actor
    }

    /// [`ActorResolver::resolve`] without masking the user name tried: the engine masks it
    /// only for the evidence samples it keeps (most attempts never become one).
    pub(crate) fn resolve_unmasked(
        &mut self,
        facts: &facts::EventFacts<'_>,
        keyer: &Keyer,
        login: bool,
    ) -> (Actor, Option<LoginUser>) {
        let ev = facts.event;
        let ip = self.client_ip(ev);
        let subnet = subnet_of(ip);
        let ip_key = match ip {
            IpAddr::V4(v) => keyer.hash(Domain::Ip, &v.octets()),
            IpAddr::V6(v) => keyer.hash(Domain::Ip, &v.octets()),
        };
        let subnet_key = match subnet.network() {
            IpAddr::V4(v) => keyer.hash(Domain::Subnet, &v.octets()),
            IpAddr::V6(v) => keyer.hash(Domain::Subnet, &v.octets()),
        };
        let headers = &ev.request.headers;
        let mut ua_val = None;
        let mut has_referer = false;
        let mut has_cookie = false;
        let mut fp = keyer.hasher(Domain::Fingerprint);
        fp.write(ev.request.method.as_bytes());
        for h in headers {
            let n = h.name.as_bytes();
            if n.eq_ignore_ascii_case(b"user-agent") {
                ua_val = Some(h.value.as_str());
            } else if n.eq_ignore_ascii_case(b"referer") {
                has_referer = true;
            } else if n.eq_ignore_ascii_case(b"cookie") {
                has_cookie = true;
            }
            // Header names in wire order, case as sent (tools differ in both).
            fp.write_u8(0);
            fp.write(n);
        }
        let (ua_key, ua) = match ua_val {
            Some(u) => self.ua_cache.get_or_insert_with(&[u], || {
                (
                    keyer.hash(Domain::UserAgent, u.as_bytes()),
                    UaFamily::of(ua_val),
                )
            }),
            None => (0, UaFamily::of(None)),
        };
        fp.write_u64(ua_key);
        let fingerprint = fp.finish();
        if self.jwt_cache.len() >= CACHE_MAX {
            self.jwt_cache.clear();
        }
        let (mut account, mut login_user, basic_user) =
            account_of(facts.request_headers(), keyer, &mut self.jwt_cache);
        let mut user = None;
        if login && let Some(u) = body_username(facts) {
            let key = keyer.hash_lower(Domain::Username, u.trim().as_bytes());
            login_user = Some(key);
            user = Some(LoginUser { raw: u, key });
            if account.is_none() {
                account = Some(Account {
                    kind: AccountKind::LoginBody,
                    key,
                });
            }
        }
        if login_user.is_none()
            && let Some(a) = account
            && a.kind == AccountKind::Basic
        {
            login_user = Some(a.key);
            if login {
                user = basic_user.map(|raw| LoginUser { raw, key: a.key });
            }
        }
        let actor = Actor {
            ip,
            ip_key,
            subnet,
            subnet_key,
            account,
            login_user,
            ua,
            ua_key,
            fingerprint,
            has_referer,
            has_cookie,
            login_user_masked: None,
        };
        (actor, user)
    }
}

/// The account from credentials in the request headers (scanned once, shared with the
/// inventory: [`facts::RequestHeaders`]), and the Basic user name as a login user. Returns
/// the account, the Basic user's key and the Basic user name (for masking only). A JWT `sub`
/// or a Basic user wins; then an API-key header, then another `Authorization` credential;
/// then a session cookie.
fn account_of(
    scan: &facts::RequestHeaders<'_>,
    keyer: &Keyer,
    jwt_cache: &mut HashMap<u64, Option<u64>, foldhash::fast::RandomState>,
) -> (Option<Account>, Option<u64>, Option<String>) {
    let mut api_key = None;
    if let Some(v) = scan.authorization {
        let v = v.trim();
        let (scheme, cred) = v.split_once(' ').unwrap_or((v, ""));
        let cred = cred.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let token_key = keyer.hash(Domain::Account, cred.as_bytes());
            let sub = *jwt_cache.entry(token_key).or_insert_with(|| {
                jwt_sub(cred).map(|sub| keyer.hash(Domain::Account, sub.as_bytes()))
            });
            if let Some(key) = sub {
                let account = Account {
                    kind: AccountKind::JwtSub,
                    key,
                };
                return (Some(account), None, None);
            }
            api_key = Some(token_key);
        } else if scheme.eq_ignore_ascii_case("basic") {
            if let Some(user) = basic_user(cred) {
                let key = keyer.hash_lower(Domain::Username, user.as_bytes());
                let account = Account {
                    kind: AccountKind::Basic,
                    key,
                };
                return (Some(account), Some(key), Some(user));
            }
        } else if !cred.is_empty() {
            api_key = Some(keyer.hash(Domain::Account, cred.as_bytes()));
        }
    }
    if let Some(k) = scan.api_key {
        api_key = Some(keyer.hash(Domain::Account, k.as_bytes()));
    }
    let session = scan
        .session_token
        .map(|t| keyer.hash(Domain::Account, t.as_bytes()));
    let acct = api_key
        .map(|key| Account {
            kind: AccountKind::ApiKey,
            key,
        })
        .or(session.map(|key| Account {
            kind: AccountKind::Session,
            key,
        }));
    (acct, None, None)
}

/// The `sub` claim of a JWT (compact JWS), decoded without verifying the signature: the
/// analyzer only needs a stable account key, not trust.
pub fn jwt_sub(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let _header = parts.next()?;
    let payload = parts.next()?;
    parts.next()?;
    if payload.len() > 4096 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: Option<serde_json::Value>,
    }
    let c: Claims = serde_json::from_slice(&bytes).ok()?;
    match c.sub? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn basic_user(cred: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cred)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (user, _password) = s.split_once(':')?;
    (!user.is_empty()).then(|| user.to_owned())
}

/// The user name in a login request body (JSON object or form), by field name, read from the
/// event's shared decoded request body; bodies over 16 KiB are not read.
fn body_username(facts: &facts::EventFacts<'_>) -> Option<String> {
    let body = facts.request_body().ok()?;
    if body.bytes.len() > 16 * 1024 {
        return None;
    }
    let data = std::str::from_utf8(&body.bytes).ok()?.trim_start();
    if data.starts_with('{') {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(data).ok()?;
        return find_user_json(&v, 0);
    }
    // application/x-www-form-urlencoded (or a query-like body).
    let mut best: Option<(usize, String)> = None;
    for pair in data.split('&') {
        let (k, v) = pair.split_once('=')?;
        let k = facts::percent_decode(k, true);
        if let Some(rank) = user_rank(&k) {
            let v = facts::percent_decode(v, true).into_owned();
            if !v.is_empty() && best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((rank, v));
            }
        }
    }
    best.map(|(_, v)| v)
}

fn user_rank(k: &str) -> Option<usize> {
    USER_FIELDS.iter().position(|f| k.eq_ignore_ascii_case(f))
}

fn find_user_json(m: &serde_json::Map<String, serde_json::Value>, depth: u8) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for (k, v) in m {
        if let Some(rank) = user_rank(k) {
            let s = match v {
                serde_json::Value::String(s) if !s.is_empty() => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => continue,
            };
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((rank, s));
            }
        }
    }
    if best.is_none() && depth < 2 {
        for v in m.values() {
            if let serde_json::Value::Object(o) = v
                && let Some(u) = find_user_json(o, depth + 1)
            {
                return Some(u);
            }
        }
    }
    best.map(|(_, v)| v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use apitap_labels::HashKey;
    use apitap_schema::test_support::EventBuilder;

    pub(crate) fn keyer() -> Keyer {
        Keyer::new(&HashKey::from_secret(b"test"))
    }

    pub(crate) fn ev(ip: &str, headers: &[(&str, &str)], body: &str) -> ApiEvent {
        EventBuilder::post("/login")
            .schema_version("1.1")
            .event_id("0".repeat(32))
            .sensor("s", "h")
            .at_us(0)
            .client_ip(ip.parse::<std::net::IpAddr>().unwrap())
            .client_port(1234)
            .server("10.9.9.9:80")
            .host("api")
            .headers(headers)
            .body_bytes(body)
            .no_response()
            .build()
    }

    #[test]
    fn ua_families() {
        assert_eq!(UaFamily::of(Some("Mozilla/4.0 (Hydra)")), UaFamily::Hydra);
        assert_eq!(
            UaFamily::of(Some("Fuzz Faster U Fool v2.1.0-dev")),
            UaFamily::Ffuf
        );
        assert_eq!(UaFamily::of(Some("Wfuzz/3.1.0")), UaFamily::Wfuzz);
        assert_eq!(UaFamily::of(Some("gobuster/3.6")), UaFamily::Gobuster);
        assert_eq!(UaFamily::of(Some("Wget/1.21.3")), UaFamily::Wget);
        // HTTrack 3.49's default, recorded against Datasette and httpbin (issue 14).
        assert_eq!(
            UaFamily::of(Some("Mozilla/4.5 (compatible; HTTrack 3.0x; Windows 98)")),
            UaFamily::Mirror
        );
        assert_eq!(
            UaFamily::of(Some("sqlmap/1.7#stable (https://sqlmap.org)")),
            UaFamily::Sqlmap
        );
        assert_eq!(UaFamily::of(Some("Go-http-client/1.1")), UaFamily::Go);
        assert_eq!(UaFamily::of(Some("python-requests/2.31")), UaFamily::Python);
        assert_eq!(UaFamily::of(Some("curl/8.5.0")), UaFamily::Curl);
        assert_eq!(
            UaFamily::of(Some(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
            )),
            UaFamily::Browser
        );
        assert_eq!(
            UaFamily::of(Some("Mozilla/5.0 HeadlessChrome/120.0 Safari/537.36")),
            UaFamily::Headless
        );
        assert_eq!(UaFamily::of(None), UaFamily::Missing);
        assert_eq!(UaFamily::of(Some("  ")), UaFamily::Missing);
        assert!(UaFamily::Hydra.is_attack_tool());
        assert!(!UaFamily::Curl.is_attack_tool());
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let xff = [("X-Forwarded-For", "198.51.100.7, 10.0.0.5")];
        let none = ActorResolver::new(vec![]);
        assert_eq!(
            none.client_ip(&ev("10.0.0.1", &xff, "")).to_string(),
            "10.0.0.1"
        );
        let r = ActorResolver::new(vec!["10.0.0.0/8".parse().unwrap()]);
        // Peer trusted: right-most untrusted hop.
        assert_eq!(
            r.client_ip(&ev("10.0.0.1", &xff, "")).to_string(),
            "198.51.100.7"
        );
        // Peer untrusted: headers ignored (spoofable).
        assert_eq!(
            r.client_ip(&ev("203.0.113.9", &xff, "")).to_string(),
            "203.0.113.9"
        );
        // A client-supplied left-most hop cannot hide the real one.
        let spoof = [("X-Forwarded-For", "1.2.3.4, 198.51.100.8")];
        assert_eq!(
            r.client_ip(&ev("10.0.0.1", &spoof, "")).to_string(),
            "198.51.100.8"
        );
        let real = [("X-Real-IP", "198.51.100.9")];
        assert_eq!(
            r.client_ip(&ev("10.0.0.1", &real, "")).to_string(),
            "198.51.100.9"
        );
        assert_eq!(
            r.client_ip(&ev("10.0.0.1", &[], "")).to_string(),
            "10.0.0.1"
        );
    }

    #[test]
    fn subnets() {
        assert_eq!(
            subnet_of("203.0.113.77".parse().unwrap()).to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            subnet_of("2001:db8:1:2:3:4:5:6".parse().unwrap()).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            subnet_of("::ffff:203.0.113.77".parse().unwrap()).to_string(),
            "203.0.113.0/24"
        );
    }

    #[test]
    fn accounts_are_keyed_hashes() {
        let k = keyer();
        let mut r = ActorResolver::new(vec![]);
        // {"alg":"HS256"}.{"sub":"alice"}.sig
        let jwt = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
        let a = r.resolve(&ev("1.1.1.1", &[("Authorization", jwt)], ""), &k, false);
        let acct = a.account.unwrap();
        assert_eq!(acct.kind, AccountKind::JwtSub);
        assert_eq!(acct.key, k.hash(Domain::Account, b"alice"));
        assert!(!acct.render().contains("alice"));
        let basic = "Basic YWxpY2U6aHVudGVyMg=="; // alice:hunter2
        let a = r.resolve(&ev("1.1.1.1", &[("authorization", basic)], ""), &k, true);
        assert_eq!(a.account.unwrap().kind, AccountKind::Basic);
        assert_eq!(a.login_user, Some(k.hash_lower(Domain::Username, b"alice")));
        let a = r.resolve(
            &ev(
                "1.1.1.1",
                &[("Cookie", "theme=dark; JSESSIONID=ABCDEF0123456789")],
                "",
            ),
            &k,
            false,
        );
        assert_eq!(a.account.unwrap().kind, AccountKind::Session);
        let a = r.resolve(
            &ev("1.1.1.1", &[("X-Api-Key", "k-123456789")], ""),
            &k,
            false,
        );
        assert_eq!(a.account.unwrap().kind, AccountKind::ApiKey);
        // Login bodies: JSON and form, only when the request is a login.
        let body = r#"{"password":"x","username":"Bob@Example.com"}"#;
        let a = r.resolve(&ev("1.1.1.1", &[], body), &k, true);
        assert_eq!(
            a.login_user,
            Some(k.hash_lower(Domain::Username, b"bob@example.com"))
        );
        assert_eq!(a.account.unwrap().kind, AccountKind::LoginBody);
        assert!(
            r.resolve(&ev("1.1.1.1", &[], body), &k, false)
                .login_user
                .is_none()
        );
        let a = r.resolve(&ev("1.1.1.1", &[], "user=carol%40x.org&pass=1"), &k, true);
        assert_eq!(
            a.login_user,
            Some(k.hash_lower(Domain::Username, b"carol@x.org"))
        );
        let nested = r#"{"data":{"account":"dave","pwd":"x"}}"#;
        let a = r.resolve(&ev("1.1.1.1", &[], nested), &k, true);
        assert_eq!(a.login_user, Some(k.hash_lower(Domain::Username, b"dave")));
    }

    #[test]
    fn fingerprint_follows_header_order_and_ua() {
        let k = keyer();
        let mut r = ActorResolver::new(vec![]);
        let a = r.resolve(
            &ev("1.1.1.1", &[("Host", "a"), ("User-Agent", "x")], ""),
            &k,
            false,
        );
        let b = r.resolve(
            &ev("2.2.2.2", &[("Host", "b"), ("User-Agent", "x")], ""),
            &k,
            false,
        );
        let c = r.resolve(
            &ev("1.1.1.1", &[("User-Agent", "x"), ("Host", "a")], ""),
            &k,
            false,
        );
        let d = r.resolve(
            &ev("1.1.1.1", &[("Host", "a"), ("User-Agent", "y")], ""),
            &k,
            false,
        );
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_ne!(a.fingerprint, d.fingerprint);
        assert!(!a.has_referer);
    }

    #[test]
    fn url_decoding() {}
}
