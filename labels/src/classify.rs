//! API classification (R-SEN-2): the function class of a transaction (from method, path words
//! in English, pinyin and Chinese, parameter names, content types and response shape) and its
//! sensitivity level (from the labels it actually carries, per JR/T 0171-2020). Both rule sets
//! are tables below, evaluated top to bottom (first match wins), and mirrored in
//! `docs/sensitive-data.md`.
use std::collections::HashMap;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use apitap_schema::ApiEvent;
use serde::{Deserialize, Serialize};

use crate::body::BodyKind;
use crate::event::{EventLabels, is_body_part};
use crate::label::{DataClass, Direction, Label, Part};

/// What an API is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionClass {
    /// Sign in.
    Login,
    /// Sign out.
    Logout,
    /// Account registration.
    Registration,
    /// Sends an SMS / one-time code.
    SmsSend,
    /// Verifies an SMS / one-time code.
    SmsVerify,
    /// Password reset or change.
    PasswordReset,
    /// Bulk export.
    Export,
    /// File upload.
    FileUpload,
    /// File download.
    FileDownload,
    /// Read one object by id.
    QueryById,
    /// Search or list.
    SearchList,
    /// Create.
    Create,
    /// Update.
    Update,
    /// Delete.
    Delete,
    /// None of the above.
    Other,
}

impl FunctionClass {
    /// Every class, in rule order.
    pub const ALL: &'static [FunctionClass] = &[
        FunctionClass::Login,
        FunctionClass::Logout,
        FunctionClass::Registration,
        FunctionClass::SmsSend,
        FunctionClass::SmsVerify,
        FunctionClass::PasswordReset,
        FunctionClass::Export,
        FunctionClass::FileUpload,
        FunctionClass::FileDownload,
        FunctionClass::QueryById,
        FunctionClass::SearchList,
        FunctionClass::Create,
        FunctionClass::Update,
        FunctionClass::Delete,
        FunctionClass::Other,
    ];

    /// Classes that are reachable without authentication by design.
    pub fn is_pre_auth(self) -> bool {
        matches!(
            self,
            FunctionClass::Login
                | FunctionClass::Logout
                | FunctionClass::Registration
                | FunctionClass::SmsSend
                | FunctionClass::SmsVerify
                | FunctionClass::PasswordReset
        )
    }
}

/// Sensitivity level of an API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// No sensitive data.
    None,
    /// Only C1 data or values already masked.
    Low,
    /// C2 identity/account data.
    Medium,
    /// C3 authentication data, or C2 data in bulk or as a full identity profile.
    High,
}

/// Evidence beyond path words that selects a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// No extra signal.
    None,
    /// The request carries this label (unmasked).
    RequestLabel(Label),
    /// The request is multipart with a file part, or a PUT/POST of binary content.
    FileInRequest,
    /// The response is an attachment (`Content-Disposition: attachment`) or binary.
    FileInResponse,
    /// The response is CSV/spreadsheet, or an attachment with many records.
    TabularAttachment,
    /// List-style query parameters (`page`, `pageSize`, `limit`, `offset`, `keyword`, `q`) or
    /// a response array with ≥ 2 records.
    ListShape,
    /// The last path segment looks like an object id, or an `id`-like query parameter.
    IdInRequest,
}

/// One row of the function-class table.
#[derive(Debug, Clone, Copy)]
pub struct FunctionRule {
    /// Resulting class.
    pub class: FunctionClass,
    /// Methods the rule applies to (empty: any).
    pub methods: &'static [&'static str],
    /// Path words, any of which must appear (English/pinyin words, compounds, Chinese).
    pub words: &'static [&'static str],
    /// When non-empty, a second group of which one must also appear.
    pub with: &'static [&'static str],
    /// Alternative evidence that selects the class without the words.
    pub signal: Signal,
}

const PWD: &[&str] = &["password", "pwd", "passwd", "mima", "mm", "密码"];
const CODE: &[&str] = &[
    "sms",
    "code",
    "otp",
    "verifycode",
    "smscode",
    "yzm",
    "yanzhengma",
    "captcha",
    "vcode",
    "验证码",
    "短信",
    "校验码",
];

/// The function-class table (R-SEN-2). First match wins; `other` when none does.
pub const FUNCTION_RULES: &[FunctionRule] = &[
    FunctionRule {
        class: FunctionClass::Logout,
        methods: &[],
        words: &[
            "logout", "signout", "logoff", "tuichu", "dengchu", "退出", "登出", "注销",
        ],
        with: &[],
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::PasswordReset,
        methods: &[],
        words: &[
            "reset", "forgot", "forget", "find", "retrieve", "recover", "change", "modify",
            "update", "zhaohui", "chongzhi", "xiugai", "重置", "找回", "修改", "忘记",
        ],
        with: PWD,
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::PasswordReset,
        methods: &[],
        words: &[
            "resetpassword",
            "forgotpassword",
            "resetpwd",
            "changepassword",
            "changepwd",
            "zhmm",
            "czmm",
            "xgmm",
        ],
        with: &[],
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::Registration,
        methods: &[],
        words: &[
            "register",
            "signup",
            "registration",
            "zhuce",
            "enroll",
            "注册",
        ],
        with: &[],
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::Login,
        methods: &[],
        words: &[
            "login",
            "signin",
            "logon",
            "denglu",
            "authenticate",
            "登录",
            "登陆",
            "oauth2token",
            "sso",
        ],
        with: &[],
        signal: Signal::RequestLabel(Label::Password),
    },
    FunctionRule {
        class: FunctionClass::SmsSend,
        methods: &[],
        words: &[
            "send", "get", "fasong", "huoqu", "request", "fetch", "发送", "获取",
        ],
        with: CODE,
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::SmsSend,
        methods: &[],
        words: &[
            "sendsms",
            "sendcode",
            "smssend",
            "getcode",
            "sendotp",
            "fsyzm",
            "hqyzm",
            "sendverifycode",
        ],
        with: &[],
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::SmsVerify,
        methods: &[],
        words: &[
            "verify", "check", "validate", "confirm", "jiaoyan", "yanzheng", "校验", "验证",
        ],
        with: CODE,
        signal: Signal::RequestLabel(Label::OtpCode),
    },
    FunctionRule {
        class: FunctionClass::Export,
        methods: &[],
        words: &[
            "export",
            "daochu",
            "dump",
            "导出",
            "exportexcel",
            "downloadexcel",
        ],
        with: &[],
        signal: Signal::TabularAttachment,
    },
    FunctionRule {
        class: FunctionClass::FileUpload,
        methods: &[],
        words: &["upload", "shangchuan", "上传", "import", "daoru", "导入"],
        with: &[],
        signal: Signal::FileInRequest,
    },
    FunctionRule {
        class: FunctionClass::FileDownload,
        methods: &[],
        words: &["download", "xiazai", "下载", "attachment", "fujian"],
        with: &[],
        signal: Signal::FileInResponse,
    },
    FunctionRule {
        class: FunctionClass::SearchList,
        methods: &[],
        words: &[
            "search", "list", "query", "find", "page", "sousuo", "liebiao", "chaxun", "browse",
            "查询", "列表", "搜索",
        ],
        with: &[],
        signal: Signal::ListShape,
    },
    FunctionRule {
        class: FunctionClass::Delete,
        methods: &["DELETE"],
        words: &[],
        with: &[],
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::Delete,
        methods: &[],
        words: &["delete", "remove", "del", "shanchu", "删除"],
        with: &[],
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::QueryById,
        methods: &["GET"],
        words: &["detail", "details", "info", "xiangqing", "详情"],
        with: &[],
        signal: Signal::IdInRequest,
    },
    FunctionRule {
        class: FunctionClass::Update,
        methods: &["PUT", "PATCH"],
        words: &[],
        with: &[],
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::Update,
        methods: &[],
        words: &[
            "update", "edit", "modify", "xiugai", "gengxin", "修改", "更新",
        ],
        with: &[],
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::Create,
        methods: &[],
        words: &[
            "create", "add", "new", "insert", "xinzeng", "tianjia", "新增", "添加", "创建",
        ],
        with: &[],
        signal: Signal::None,
    },
    FunctionRule {
        class: FunctionClass::Create,
        methods: &["POST"],
        words: &[],
        with: &[],
        signal: Signal::None,
    },
];

/// Words of a (percent-decoded) path.
struct PathWords {
    /// The words (lower case), concatenated.
    joined: String,
    /// Where each word ends in `joined` (issue 18: one string, not one per word).
    ends: Vec<usize>,
    decoded: String,
}

impl PathWords {
    fn new(path: &str) -> PathWords {
        let mut buf = Vec::new();
        let raw = path.as_bytes();
        let decoded = if crate::facts::percent_decode_into(raw, false, &mut buf) {
            String::from_utf8_lossy(&buf).into_owned()
        } else {
            path.to_owned()
        };
        let mut joined = String::with_capacity(decoded.len());
        let mut ends = Vec::new();
        let mut start = 0;
        let mut prev_lower = false;
        for ch in decoded.chars() {
            let boundary = !ch.is_ascii_alphanumeric() || (ch.is_ascii_uppercase() && prev_lower);
            if boundary && joined.len() > start {
                ends.push(joined.len());
                start = joined.len();
            }
            if ch.is_ascii_alphanumeric() {
                joined.push(ch.to_ascii_lowercase());
            }
            prev_lower = ch.is_ascii_lowercase();
        }
        if joined.len() > start {
            ends.push(joined.len());
        }
        PathWords {
            joined,
            ends,
            decoded,
        }
    }

    /// The words in order.
    fn words(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .filter_map(|(s, &e)| self.joined.get(s..e))
    }

    fn has(&self, w: &str) -> bool {
        if !w.is_ascii() {
            return self.decoded.contains(w);
        }
        self.words().any(|x| x == w) || (w.len() >= 5 && self.joined.contains(w))
    }

    fn any(&self, ws: &[&str]) -> bool {
        ws.iter().any(|w| self.has(w))
    }
}

/// `hay` contains `needle` (lower-case ASCII) ignoring ASCII case: what
/// `hay.to_ascii_lowercase().contains(needle)` answers, without the copy.
fn contains_lower(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `s` ends with `suffix` (lower-case ASCII) ignoring ASCII case.
fn ends_with_lower(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn header<'a>(h: &'a [apitap_schema::Header], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|x| x.name.eq_ignore_ascii_case(name))
        .map(|x| x.value.as_str())
}

fn id_like(seg: &str) -> bool {
    let s = seg.trim();
    if s.is_empty() {
        return false;
    }
    if s.starts_with('{') && s.ends_with('}') {
        return true;
    }
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let hex = s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    (digits == s.len()) || (hex && s.len() >= 8 && digits > 0)
}

fn signal(sig: Signal, ev: &ApiEvent, labels: &EventLabels) -> bool {
    let resp = ev.response.as_ref();
    match sig {
        Signal::None => false,
        Signal::RequestLabel(l) => labels.has(Direction::Request, l),
        // The tests below compare with lower-case ASCII words ignoring ASCII case, which is
        // what lower-casing the value first and comparing answered (issue 18: without the
        // copy per rule and event).
        Signal::FileInRequest => {
            let ct = header(&ev.request.headers, "content-type").unwrap_or("");
            (contains_lower(ct, "multipart/")
                && labels.request.kind == BodyKind::Multipart
                && ev.request.body.data.contains("filename="))
                || ((ev.request.method.eq_ignore_ascii_case("PUT")
                    || ev.request.method.eq_ignore_ascii_case("POST"))
                    && (contains_lower(ct, "octet-stream")
                        || ct
                            .get(..6)
                            .is_some_and(|p| p.eq_ignore_ascii_case("image/"))))
        }
        Signal::FileInResponse => resp.is_some_and(|r| {
            header(&r.headers, "content-disposition")
                .is_some_and(|d| contains_lower(d, "attachment"))
                || labels
                    .response
                    .as_ref()
                    .is_some_and(|s| s.kind == BodyKind::Binary)
        }),
        Signal::TabularAttachment => resp.is_some_and(|r| {
            let ct = header(&r.headers, "content-type").unwrap_or("");
            contains_lower(ct, "csv")
                || contains_lower(ct, "spreadsheet")
                || contains_lower(ct, "ms-excel")
        }),
        Signal::ListShape => {
            const LIST_PARAMS: &[&str] = &[
                "page", "pagesize", "pagenum", "pageno", "limit", "offset", "keyword", "keywords",
                "q", "size", "current", "per_page", "rows", "start", "sort",
            ];
            let listy = |p: &str| LIST_PARAMS.iter().any(|l| l.eq_ignore_ascii_case(p));
            labels.query_params.iter().any(|p| listy(p))
                || labels
                    .request
                    .fields
                    .iter()
                    .any(|p| listy(p.rsplit(['.', '$']).next().unwrap_or("")))
                || labels
                    .response
                    .as_ref()
                    .is_some_and(|s| s.array_records >= 2)
        }
        Signal::IdInRequest => {
            let last = ev
                .request
                .path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("");
            // (`id` and `…_id` end with `id` too.)
            id_like(last) || labels.query_params.iter().any(|p| ends_with_lower(p, "id"))
        }
    }
}

/// The words of [`FUNCTION_RULES`] compiled once (issue 18): testing each of the table's
/// ~150 words against a path one by one ([`PathWords::has`], a substring search each) was a
/// tenth of the analyzer's per-event time. Here every word gets an index, and one pass per
/// path finds them all: path words looked up among the ASCII words (whole-word match), one
/// Aho-Corasick scan of the joined words for the ASCII words of 5 bytes or more, one of the
/// decoded path for the non-ASCII words — exactly [`PathWords::has`] for every word (a test
/// compares both).
struct CompiledRules {
    /// ASCII word → index (whole path words); foldhash: the table is ours, not the
    /// client's, and SipHash was a twentieth of the function class.
    exact: foldhash::HashMap<&'static str, usize>,
    /// ASCII words of ≥ 5 bytes, searched inside [`PathWords::joined`].
    joined: AhoCorasick,
    /// Index of each pattern of `joined`.
    joined_ids: Vec<usize>,
    /// Non-ASCII words, searched inside [`PathWords::decoded`].
    decoded: AhoCorasick,
    /// Index of each pattern of `decoded`.
    decoded_ids: Vec<usize>,
    /// Distinct words.
    count: usize,
    /// Per rule of [`FUNCTION_RULES`]: indices of its `words` and of its `with`.
    rules: Vec<(Vec<usize>, Vec<usize>)>,
}

impl CompiledRules {
    fn new() -> Result<CompiledRules, aho_corasick::BuildError> {
        let mut index: HashMap<&'static str, usize> = HashMap::new();
        let ids = |ws: &'static [&'static str], index: &mut HashMap<&'static str, usize>| {
            ws.iter()
                .map(|w| {
                    let next = index.len();
                    *index.entry(*w).or_insert(next)
                })
                .collect::<Vec<_>>()
        };
        let rules = FUNCTION_RULES
            .iter()
            .map(|r| (ids(r.words, &mut index), ids(r.with, &mut index)))
            .collect();
        let mut words: Vec<(&'static str, usize)> = index.iter().map(|(w, i)| (*w, *i)).collect();
        words.sort_by_key(|(_, i)| *i);
        let (ascii, other): (Vec<_>, Vec<_>) = words.iter().partition(|(w, _)| w.is_ascii());
        let long: Vec<_> = ascii.iter().filter(|(w, _)| w.len() >= 5).collect();
        let build = |ws: &[&(&'static str, usize)]| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(ws.iter().map(|(w, _)| *w))
        };
        Ok(CompiledRules {
            exact: ascii.iter().map(|(w, i)| (*w, *i)).collect(),
            joined: build(&long)?,
            joined_ids: long.iter().map(|(_, i)| *i).collect(),
            decoded: build(&other.iter().collect::<Vec<_>>())?,
            decoded_ids: other.iter().map(|(_, i)| *i).collect(),
            count: index.len(),
            rules,
        })
    }

    /// Per word index: whether the path has the word ([`PathWords::has`]).
    fn hits(&self, words: &PathWords) -> Vec<bool> {
        let mut hit = vec![false; self.count];
        let mut set = |i: usize| {
            if let Some(h) = hit.get_mut(i) {
                *h = true;
            }
        };
        for w in words.words() {
            if let Some(i) = self.exact.get(w) {
                set(*i);
            }
        }
        for m in self.joined.find_overlapping_iter(&words.joined) {
            if let Some(i) = self.joined_ids.get(m.pattern().as_usize()) {
                set(*i);
            }
        }
        for m in self.decoded.find_overlapping_iter(&words.decoded) {
            if let Some(i) = self.decoded_ids.get(m.pattern().as_usize()) {
                set(*i);
            }
        }
        hit
    }
}

/// [`CompiledRules`], built on first use (`None` only if Aho-Corasick refused the table:
/// the word-by-word match is then used).
static COMPILED_RULES: LazyLock<Option<CompiledRules>> =
    LazyLock::new(|| CompiledRules::new().ok());

/// Function class of one transaction (R-SEN-2), by [`FUNCTION_RULES`].
pub fn function_class(ev: &ApiEvent, labels: &EventLabels) -> FunctionClass {
    let words = PathWords::new(&ev.request.path);
    let compiled = COMPILED_RULES.as_ref().map(|c| (c, c.hits(&words)));
    let any = |i: usize, ws: &[&str], of_with: bool| match &compiled {
        Some((c, hit)) => c.rules.get(i).is_some_and(|(w, with)| {
            (if of_with { with } else { w })
                .iter()
                .any(|j| hit.get(*j).copied().unwrap_or(false))
        }),
        None => words.any(ws),
    };
    let method = &ev.request.method;
    for (i, r) in FUNCTION_RULES.iter().enumerate() {
        // The table's methods are upper case: the same test as against the upper-cased method.
        if !r.methods.is_empty() && !r.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            continue;
        }
        let by_words = if r.words.is_empty() {
            !r.methods.is_empty()
        } else {
            any(i, r.words, false) && (r.with.is_empty() || any(i, r.with, true))
        };
        if by_words || signal(r.signal, ev, labels) {
            return r.class;
        }
    }
    FunctionClass::Other
}

/// Default number of sensitive records per response that makes an API high sensitivity.
pub const HIGH_RECORDS: u32 = 50;

/// Identity documents and account numbers (for the "full identity profile" rule).
const STRONG_IDENTIFIERS: &[Label] = &[
    Label::PrcId,
    Label::BankCard,
    Label::CreditCard,
    Label::Iban,
    Label::CnPassport,
    Label::HkMacauPermit,
    Label::UsSsn,
];

/// One row of the sensitivity table.
#[derive(Debug, Clone, Copy)]
pub struct SensitivityRule {
    /// Resulting level.
    pub level: Sensitivity,
    /// The condition, in words (same text as the docs).
    pub when: &'static str,
}

/// The sensitivity table (JR/T 0171-2020 classes; first match wins). Credentials in the
/// `Authorization` header and session cookies are how the API is called, not data it
/// carries, and do not count.
pub const SENSITIVITY_RULES: &[SensitivityRule] = &[
    SensitivityRule {
        level: Sensitivity::High,
        when: "an unmasked C3 value (password, SMS code, CVV, token, key) in the URL, a body, or a non-auth header, either direction",
    },
    SensitivityRule {
        level: Sensitivity::High,
        when: "unmasked C2 values in the response with at least HIGH_RECORDS (50) records of one label",
    },
    SensitivityRule {
        level: Sensitivity::High,
        when: "a response with a full identity profile: 3 or more distinct unmasked C2 labels incl. an identity document or account number",
    },
    SensitivityRule {
        level: Sensitivity::Medium,
        when: "any unmasked C2 value (ID, mobile, card, name, address, …) in either direction",
    },
    SensitivityRule {
        level: Sensitivity::Low,
        when: "only C1 values (private IP, gender, USCC) or only application-masked values",
    },
    SensitivityRule {
        level: Sensitivity::None,
        when: "no labels",
    },
];

fn is_auth_transport(f: &crate::label::Finding) -> bool {
    match f.location.part {
        Part::Cookie => true,
        Part::Header => {
            matches!(
                f.location.path.as_str(),
                "authorization" | "proxy-authorization"
            ) || matches!(
                f.label,
                Label::ApiToken | Label::SessionId | Label::Jwt | Label::BearerToken
            )
        }
        _ => false,
    }
}

/// Sensitivity of one transaction (R-SEN-2), by [`SENSITIVITY_RULES`], with `high_records` as
/// the bulk threshold.
pub fn sensitivity_with(labels: &EventLabels, high_records: u32) -> Sensitivity {
    let data = || labels.findings.iter().filter(|f| !is_auth_transport(f));
    if data().any(|f| f.mask.is_none() && f.label.class() == DataClass::C3) {
        return Sensitivity::High;
    }
    let resp_c2 = || {
        data().filter(|f| {
            f.location.direction == Direction::Response
                && f.mask.is_none()
                && f.label.class() == DataClass::C2
        })
    };
    if resp_c2().any(|f| is_body_part(f.location.part) && f.count >= high_records) {
        return Sensitivity::High;
    }
    let mut distinct: Vec<Label> = resp_c2().map(|f| f.label).collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() >= 3 && distinct.iter().any(|l| STRONG_IDENTIFIERS.contains(l)) {
        return Sensitivity::High;
    }
    if data().any(|f| f.mask.is_none() && f.label.class() == DataClass::C2) {
        return Sensitivity::Medium;
    }
    if data().next().is_some() {
        return Sensitivity::Low;
    }
    Sensitivity::None
}

/// Sensitivity with the default bulk threshold [`HIGH_RECORDS`].
pub fn sensitivity(labels: &EventLabels) -> Sensitivity {
    sensitivity_with(labels, HIGH_RECORDS)
}

/// Function class and sensitivity of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// What the API is for.
    pub function: FunctionClass,
    /// How sensitive it is.
    pub sensitivity: Sensitivity,
}

/// Classifies one transaction.
pub fn classify_event(ev: &ApiEvent, labels: &EventLabels) -> Classification {
    Classification {
        function: function_class(ev, labels),
        sensitivity: sensitivity(labels),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_words_split_camel_pinyin_and_chinese() {
        let w = PathWords::new("/api/v1/user/sendSmsCode");
        assert!(w.has("send") && w.has("sms") && w.has("code"));
        let w = PathWords::new("/api/%E7%99%BB%E5%BD%95");
        assert!(w.has("登录"));
        let w = PathWords::new("/api/userlogin");
        assert!(w.has("login"));
        let w = PathWords::new("/api/playlist");
        assert!(!w.has("list"), "short words match whole words only");
    }

    /// The compiled table finds exactly the words [`PathWords::has`] finds, for every word
    /// of the table, on paths built from the table's own words (whole, inside compounds,
    /// camel-cased, percent-encoded Chinese) and on unrelated paths.
    #[test]
    fn compiled_rules_match_the_word_by_word_test() {
        let c = CompiledRules::new().unwrap();
        let mut paths: Vec<String> = vec![
            "/".into(),
            "/api/v1/user/sendSmsCode".into(),
            "/api/%E7%99%BB%E5%BD%95".into(),
            "/api/userlogin".into(),
            "/api/playlist".into(),
            "/get/anything/42".into(),
            "/a/resetPassword/x".into(),
            "/x%ZZ/%E9%AA%8C%E8%AF%81%E7%A0%81/y".into(),
        ];
        for r in FUNCTION_RULES {
            for w in r.words.iter().chain(r.with) {
                paths.push(format!("/api/{w}"));
                paths.push(format!("/api/my{w}s/1"));
                paths.push(format!("/api/x{}Y", w.to_uppercase()));
            }
        }
        let mut seen = 0;
        for p in &paths {
            let words = PathWords::new(p);
            let hit = c.hits(&words);
            for (i, r) in FUNCTION_RULES.iter().enumerate() {
                let (ws, with) = &c.rules[i];
                for (idx, w) in ws.iter().zip(r.words).chain(with.iter().zip(r.with)) {
                    assert_eq!(hit[*idx], words.has(w), "{w:?} in {p:?}");
                    seen += usize::from(hit[*idx]);
                }
            }
        }
        assert!(seen > paths.len(), "the paths hit the table's words");
    }

    #[test]
    fn case_blind_tests_answer_as_lower_casing_first() {
        for hay in [
            "",
            "a",
            "Multipart/Form-Data",
            "IMAGE/PNG",
            "x-ÉTÉ-csv",
            "İd",
            "_ID",
            "fid",
        ] {
            for needle in ["multipart/", "image/", "csv", "id", "attachment"] {
                let lower = hay.to_ascii_lowercase();
                assert_eq!(
                    contains_lower(hay, needle),
                    lower.contains(needle),
                    "{hay} {needle}"
                );
                assert_eq!(
                    ends_with_lower(hay, needle),
                    lower.ends_with(needle),
                    "{hay}"
                );
            }
        }
        let w = PathWords::new("/v2/getUserInfo/%E7%99%BB");
        assert_eq!(w.words().collect::<Vec<_>>(), ["v2", "get", "user", "info"]);
        assert_eq!(w.joined, "v2getuserinfo");
    }

    #[test]
    fn ids() {
        assert!(id_like("1024"));
        assert!(id_like("550e8400-e29b-41d4-a716-446655440000"));
        assert!(id_like("{id}"));
        assert!(!id_like("users"));
    }
}
