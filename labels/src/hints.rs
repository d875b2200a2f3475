//! Context from names: what a JSON key, form field, header, cookie or XML element name (or the
//! words just before a value in free text) says about the value. English, pinyin (full and
//! initials) and Chinese. Names are split into words (`idCardNo` → `id card no`); short words
//! only match exactly, long patterns and Chinese also match inside compounds (one
//! Aho-Corasick automaton).
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Bitset of hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeyHints(pub u32);

macro_rules! hints {
    ($($c:ident = $bit:expr;)*) => {
        impl KeyHints { $(#[allow(missing_docs)] pub const $c: KeyHints = KeyHints(1 << $bit);)* }
    };
}

hints! {
    PHONE = 0; IDCARD = 1; CARD = 2; ACCOUNT = 3; EMAIL = 4; NAME_STRONG = 5; NAME_WEAK = 6;
    ADDRESS = 7; BIRTH = 8; GENDER = 9; PLATE = 10; PASSPORT = 11; PERMIT = 12; IDDOC = 13;
    SSN = 14; USCC = 15; IBAN = 16; PASSWORD = 17; OTP = 18; CVV = 19; TOKEN = 20; SESSION = 21;
    NEGNUM = 22; VERSION = 23; IP = 24;
}

impl KeyHints {
    /// No hint.
    pub const NONE: KeyHints = KeyHints(0);
    /// Hints that flow from a parent key to its nested values (`{"card": {"no": …}}`).
    pub const INHERITABLE: KeyHints = KeyHints(
        Self::PHONE.0
            | Self::IDCARD.0
            | Self::CARD.0
            | Self::ACCOUNT.0
            | Self::EMAIL.0
            | Self::ADDRESS.0
            | Self::PASSPORT.0
            | Self::PERMIT.0
            | Self::IDDOC.0
            | Self::SSN.0
            | Self::USCC.0
            | Self::IBAN.0
            | Self::PLATE.0,
    );
    /// Any hint that makes the whole value a label by itself.
    pub const KEYED: KeyHints = KeyHints(
        Self::PASSWORD.0
            | Self::OTP.0
            | Self::CVV.0
            | Self::TOKEN.0
            | Self::SESSION.0
            | Self::NAME_STRONG.0
            | Self::NAME_WEAK.0
            | Self::ADDRESS.0
            | Self::BIRTH.0
            | Self::GENDER.0
            | Self::PLATE.0,
    );
    /// Card context (card number, account number).
    pub const CARD_CTX: KeyHints = KeyHints(Self::CARD.0 | Self::ACCOUNT.0);
    /// Identity-document context.
    pub const ID_CTX: KeyHints = KeyHints(Self::IDCARD.0 | Self::IDDOC.0);

    /// True when any bit of `o` is set.
    #[inline]
    pub fn any(self, o: KeyHints) -> bool {
        self.0 & o.0 != 0
    }
    /// Union.
    #[inline]
    pub fn or(self, o: KeyHints) -> KeyHints {
        KeyHints(self.0 | o.0)
    }
    /// Intersection.
    #[inline]
    pub fn and(self, o: KeyHints) -> KeyHints {
        KeyHints(self.0 & o.0)
    }
    /// Without the bits of `o`.
    #[inline]
    pub fn without(self, o: KeyHints) -> KeyHints {
        KeyHints(self.0 & !o.0)
    }
    /// Positive context of any kind (anything but the negative numeric/version hints).
    pub fn positive(self) -> bool {
        self.without(KeyHints::NEGNUM.or(KeyHints::VERSION)).0 != 0
    }
}

/// Exact-word hints (lower-case words after splitting a name).
fn word_hints(w: &[u8]) -> KeyHints {
    match w {
        b"phone" | b"mobile" | b"tel" | b"telephone" | b"cellphone" | b"cell" | b"shouji"
        | b"sjh" | b"sjhm" | b"dianhua" | b"lxdh" | b"mob" | b"msisdn" | b"fax" | b"phoneno"
        | b"mobileno" | b"telno" | b"lxfs" => KeyHints::PHONE,
        b"idcard" | b"sfz" | b"sfzh" | b"sfzhm" | b"shenfenzheng" | b"identity" | b"idcardno"
        | b"nationalid" | b"citizenid" | b"idnumber" | b"idno" | b"identification" => {
            KeyHints::IDCARD
        }
        b"zjhm" | b"certno" | b"cert" | b"certificate" | b"document" | b"zjh" | b"certnum" => {
            KeyHints::IDDOC
        }
        b"card" | b"cardno" | b"cardnum" | b"pan" | b"bankcard" | b"yhk" | b"yhkh" | b"kahao"
        | b"kh" | b"cardnumber" | b"debit" | b"credit" => KeyHints::CARD,
        b"acct" | b"acctno" | b"account" | b"accountno" | b"accno" | b"zhanghao" => {
            KeyHints::ACCOUNT
        }
        b"email" | b"mail" | b"youxiang" | b"yx" | b"emailaddress" | b"dzyx" => KeyHints::EMAIL,
        b"xm" | b"xingming" | b"realname" | b"fullname" | b"truename" | b"custname"
        | b"customername" | b"holdername" | b"cardholder" | b"firstname" | b"lastname"
        | b"surname" | b"givenname" | b"payee" | b"payer" | b"xingshi" => KeyHints::NAME_STRONG,
        b"name" | b"names" => KeyHints::NAME_WEAK,
        b"address" | b"addr" | b"dizhi" | b"dz" | b"zhuzhi" | b"residence" | b"street"
        | b"jtzz" | b"txdz" | b"zz" | b"homeaddress" => KeyHints::ADDRESS,
        b"birth" | b"birthday" | b"birthdate" | b"dob" | b"csrq" | b"shengri" | b"born" => {
            KeyHints::BIRTH
        }
        b"gender" | b"sex" | b"xb" | b"xingbie" => KeyHints::GENDER,
        b"plate" | b"plateno" | b"chepai" | b"cph" | b"cphm" | b"licenseplate" | b"vehicleno" => {
            KeyHints::PLATE
        }
        b"passport" | b"huzhao" | b"passportno" | b"hzhm" => KeyHints::PASSPORT,
        b"permit" | b"txz" | b"gatxz" | b"hxz" | b"tongxingzheng" | b"huixiangzheng" => {
            KeyHints::PERMIT
        }
        b"ssn" => KeyHints::SSN,
        b"uscc" | b"tyshxydm" | b"shxydm" | b"xydm" | b"nsrsbh" | b"taxno" | b"creditcode" => {
            KeyHints::USCC
        }
        b"iban" => KeyHints::IBAN,
        b"password" | b"passwd" | b"pwd" | b"pass" | b"passcode" | b"mima" | b"kouling"
        | b"pin" | b"paypwd" | b"loginpwd" | b"passphrase" | b"jymm" | b"dlmm" => {
            KeyHints::PASSWORD
        }
        b"otp" | b"smscode" | b"verifycode" | b"vcode" | b"yzm" | b"yanzhengma" | b"checkcode"
        | b"validcode" | b"totp" | b"mfa" | b"dxyzm" | b"authcode" | b"smsotp" => KeyHints::OTP,
        b"cvv" | b"cvv2" | b"cvn" | b"cvn2" | b"cvc" | b"cvc2" | b"aqm" | b"securitycode" => {
            KeyHints::CVV
        }
        b"token" | b"accesstoken" | b"refreshtoken" | b"idtoken" | b"apikey" | b"appsecret"
        | b"secret" | b"secretkey" | b"clientsecret" | b"accesskey" | b"privatekey"
        | b"credential" | b"credentials" | b"apitoken" | b"authtoken" => KeyHints::TOKEN,
        b"session" | b"sessionid" | b"sid" | b"jsessionid" | b"phpsessid" | b"sessid" => {
            KeyHints::SESSION
        }
        b"order" | b"orderno" | b"orderid" | b"trace" | b"traceid" | b"serial" | b"sn" | b"seq"
        | b"sequence" | b"ts" | b"time" | b"timestamp" | b"created" | b"updated" | b"amount"
        | b"amt" | b"price" | b"balance" | b"total" | b"count" | b"qty" | b"quantity" | b"size"
        | b"length" | b"offset" | b"limit" | b"page" | b"txn" | b"txnid" | b"trade"
        | b"tradeno" | b"trans" | b"transid" | b"requestid" | b"reqid" | b"msgid" | b"nonce"
        | b"hash" | b"crc" | b"checksum" | b"uuid" | b"guid" | b"id" | b"ref" | b"refno"
        | b"invoice" | b"bill" | b"billno" | b"batch" | b"score" | b"duration" | b"expires"
        | b"latency" | b"bytes" | b"fee" | b"cost" | b"flow" | b"liushui" | b"ddh" | b"lsh"
        | b"at" | b"tracking" | b"shipment" | b"sku" => KeyHints::NEGNUM,
        b"version" | b"ver" | b"v" | b"build" | b"release" => KeyHints::VERSION,
        b"ip" | b"ipaddr" | b"clientip" | b"remoteaddr" => KeyHints::IP,
        _ => KeyHints::NONE,
    }
}

/// Hints from two consecutive words (`id card`, `sms code`, `api key`, `real name`, …).
fn pair_hints(a: &[u8], b: &[u8]) -> KeyHints {
    match (a, b) {
        (b"id", b"card" | b"no" | b"number" | b"num" | b"cardno") => KeyHints::IDCARD,
        (b"cert" | b"certificate" | b"document" | b"doc" | b"zj", b"no" | b"number" | b"num") => {
            KeyHints::IDDOC
        }
        (
            b"sms" | b"verify" | b"verification" | b"check" | b"valid" | b"dynamic" | b"otp"
            | b"yanzheng" | b"mobile" | b"phone" | b"security" | b"confirm" | b"login" | b"dx",
            b"code" | b"yzm",
        ) => KeyHints::OTP,
        (
            b"api" | b"app" | b"client" | b"secret" | b"access" | b"private" | b"signing"
            | b"master" | b"encrypt" | b"encryption",
            b"key" | b"secret",
        ) => KeyHints::TOKEN,
        (b"access" | b"refresh" | b"id" | b"auth" | b"bearer" | b"api", b"token") => {
            KeyHints::TOKEN
        }
        (b"credit", b"code") => KeyHints::USCC,
        (b"tax", b"no" | b"id" | b"number") => KeyHints::USCC,
        (b"social", b"security") => KeyHints::SSN,
        (b"license" | b"licence" | b"car" | b"vehicle", b"plate" | b"no" | b"number") => {
            KeyHints::PLATE
        }
        (
            b"real" | b"true" | b"full" | b"cust" | b"customer" | b"holder" | b"person" | b"legal"
            | b"first" | b"last" | b"given" | b"family" | b"contact" | b"sur" | b"middle"
            | b"owner" | b"patient" | b"member" | b"receiver" | b"recipient" | b"sender"
            | b"beneficiary" | b"account" | b"emergency" | b"student" | b"employee" | b"applicant"
            | b"insured" | b"consignee",
            b"name",
        ) => KeyHints::NAME_STRONG,
        (b"card", b"holder") => KeyHints::NAME_STRONG,
        (b"bank" | b"debit" | b"credit", b"card") => KeyHints::CARD,
        (b"pay" | b"trade" | b"login" | b"old" | b"new" | b"confirm", b"pwd" | b"password") => {
            KeyHints::PASSWORD
        }
        (b"session", b"id" | b"key" | b"token") => KeyHints::SESSION,
        (b"user" | b"login" | b"nick" | b"file" | b"product" | b"company", b"name") => {
            KeyHints(SUPPRESS_NAME)
        }
        (b"ip", b"addr" | b"address") | (b"mac", b"addr" | b"address") => KeyHints::IP,
        _ => KeyHints::NONE,
    }
}

/// Internal marker bit: the name is not a person name (`userName`, `fileName`, …).
const SUPPRESS_NAME: u32 = 1 << 30;
/// Internal marker bit: the value describes a secret, is not one (`passwordLength`, …).
const SUPPRESS_SECRET: u32 = 1 << 29;
/// Internal marker bit: `address` is not postal (`ipAddress`, `emailAddress`, `wallet`, …).
const SUPPRESS_ADDRESS: u32 = 1 << 28;

fn suppress_word(w: &[u8]) -> u32 {
    let mut s = 0;
    if matches!(
        w,
        b"user"
            | b"login"
            | b"nick"
            | b"file"
            | b"product"
            | b"company"
            | b"bank"
            | b"shop"
            | b"app"
            | b"host"
            | b"class"
            | b"org"
            | b"dept"
            | b"branch"
            | b"merchant"
            | b"goods"
            | b"item"
            | b"brand"
            | b"city"
            | b"province"
            | b"country"
            | b"district"
            | b"street"
            | b"tag"
            | b"type"
            | b"group"
            | b"role"
            | b"screen"
            | b"domain"
            | b"server"
            | b"service"
            | b"field"
            | b"key"
            | b"table"
            | b"column"
            | b"event"
            | b"job"
            | b"task"
            | b"project"
            | b"image"
            | b"icon"
            | b"path"
            | b"device"
            | b"model"
            | b"channel"
            | b"store"
            | b"biz"
            | b"corp"
            | b"display"
            | b"plan"
            | b"category"
            | b"menu"
            | b"module"
            | b"api"
            | b"param"
            | b"attr"
            | b"node"
            | b"site"
            | b"template"
            | b"dept_name"
            | b"cert"
            | b"bucket"
            | b"queue"
            | b"topic"
            | b"level"
            | b"status"
            | b"region"
            | b"area"
            | b"school"
            | b"hospital"
            | b"username"
            | b"filename"
            | b"nickname"
            | b"hostname"
            | b"loginname"
    ) {
        s |= SUPPRESS_NAME;
    }
    if matches!(
        w,
        b"length"
            | b"len"
            | b"policy"
            | b"strength"
            | b"level"
            | b"hint"
            | b"type"
            | b"expire"
            | b"expires"
            | b"expiry"
            | b"expired"
            | b"ttl"
            | b"time"
            | b"date"
            | b"flag"
            | b"rule"
            | b"rules"
            | b"min"
            | b"max"
            | b"required"
            | b"enabled"
            | b"need"
            | b"is"
            | b"has"
            | b"changed"
            | b"updated"
            | b"count"
            | b"error"
            | b"errors"
            | b"tip"
            | b"label"
            | b"placeholder"
            | b"url"
            | b"uri"
            | b"reset"
            | b"forgot"
            | b"set"
            | b"status"
            | b"in"
            | b"csrf"
            | b"xsrf"
            | b"at"
            | b"mode"
            | b"format"
            | b"retry"
            | b"retries"
            | b"attempts"
            | b"sent"
            | b"send"
            | b"interval"
            | b"id"
            | b"scope"
            | b"scopes"
            | b"name"
            | b"valid"
            | b"verified"
            | b"strategy"
    ) {
        s |= SUPPRESS_SECRET;
    }
    if matches!(
        w,
        b"ip"
            | b"mac"
            | b"email"
            | b"mail"
            | b"server"
            | b"host"
            | b"url"
            | b"web"
            | b"wallet"
            | b"memory"
            | b"contract"
            | b"remote"
            | b"local"
            | b"bind"
            | b"listen"
            | b"proxy"
            | b"callback"
            | b"redirect"
            | b"notify"
            | b"return"
            | b"token"
            | b"base"
            | b"gateway"
    ) {
        s |= SUPPRESS_ADDRESS;
    }
    s
}

/// Patterns matched anywhere in a lower-cased name (compound words and Chinese).
const SUBSTRING_PATTERNS: &[(&str, KeyHints)] = &[
    ("password", KeyHints::PASSWORD),
    ("passwd", KeyHints::PASSWORD),
    ("mobile", KeyHints::PHONE),
    ("phone", KeyHints::PHONE),
    ("telephone", KeyHints::PHONE),
    ("idcard", KeyHints::IDCARD),
    ("shenfenzheng", KeyHints::IDCARD),
    ("cardno", KeyHints::CARD),
    ("cardnum", KeyHints::CARD),
    ("bankcard", KeyHints::CARD),
    ("acctno", KeyHints::ACCOUNT),
    ("accountno", KeyHints::ACCOUNT),
    ("email", KeyHints::EMAIL),
    ("address", KeyHints::ADDRESS),
    ("birthday", KeyHints::BIRTH),
    ("birthdate", KeyHints::BIRTH),
    ("passport", KeyHints::PASSPORT),
    ("realname", KeyHints::NAME_STRONG),
    ("fullname", KeyHints::NAME_STRONG),
    ("custname", KeyHints::NAME_STRONG),
    ("holdername", KeyHints::NAME_STRONG),
    ("accesstoken", KeyHints::TOKEN),
    ("refreshtoken", KeyHints::TOKEN),
    ("apikey", KeyHints::TOKEN),
    ("secretkey", KeyHints::TOKEN),
    ("accesskey", KeyHints::TOKEN),
    ("clientsecret", KeyHints::TOKEN),
    ("appsecret", KeyHints::TOKEN),
    ("sessionid", KeyHints::SESSION),
    ("smscode", KeyHints::OTP),
    ("verifycode", KeyHints::OTP),
    ("otpcode", KeyHints::OTP),
    ("licenseplate", KeyHints::PLATE),
    ("plateno", KeyHints::PLATE),
    ("creditcode", KeyHints::USCC),
    ("orderno", KeyHints::NEGNUM),
    ("orderid", KeyHints::NEGNUM),
    ("timestamp", KeyHints::NEGNUM),
    ("username", KeyHints(SUPPRESS_NAME)),
    ("nickname", KeyHints(SUPPRESS_NAME)),
    ("filename", KeyHints(SUPPRESS_NAME)),
    // Chinese (UTF-8 substrings).
    ("手机", KeyHints::PHONE),
    ("电话", KeyHints::PHONE),
    ("联系方式", KeyHints::PHONE),
    ("身份证", KeyHints::IDCARD),
    ("证件号", KeyHints::IDDOC),
    ("卡号", KeyHints::CARD),
    ("银行卡", KeyHints::CARD),
    ("信用卡", KeyHints::CARD),
    ("账号", KeyHints::ACCOUNT),
    ("帐号", KeyHints::ACCOUNT),
    ("账户", KeyHints::ACCOUNT),
    ("邮箱", KeyHints::EMAIL),
    ("邮件", KeyHints::EMAIL),
    ("姓名", KeyHints::NAME_STRONG),
    ("名字", KeyHints::NAME_STRONG),
    ("联系人", KeyHints::NAME_STRONG),
    ("持卡人", KeyHints::NAME_STRONG),
    ("户名", KeyHints::NAME_STRONG),
    ("地址", KeyHints::ADDRESS),
    ("住址", KeyHints::ADDRESS),
    ("出生", KeyHints::BIRTH),
    ("生日", KeyHints::BIRTH),
    ("性别", KeyHints::GENDER),
    ("车牌", KeyHints::PLATE),
    ("护照", KeyHints::PASSPORT),
    ("通行证", KeyHints::PERMIT),
    ("回乡证", KeyHints::PERMIT),
    ("信用代码", KeyHints::USCC),
    ("税号", KeyHints::USCC),
    ("纳税人识别号", KeyHints::USCC),
    ("密码", KeyHints::PASSWORD),
    ("口令", KeyHints::PASSWORD),
    ("验证码", KeyHints::OTP),
    ("校验码", KeyHints::OTP),
    ("动态码", KeyHints::OTP),
    ("安全码", KeyHints::CVV),
    ("令牌", KeyHints::TOKEN),
    ("订单", KeyHints::NEGNUM),
    ("流水", KeyHints::NEGNUM),
    ("金额", KeyHints::NEGNUM),
    ("时间", KeyHints::NEGNUM),
    ("用户名", KeyHints(SUPPRESS_NAME)),
    ("昵称", KeyHints(SUPPRESS_NAME)),
];

/// The name classifier (immutable, shared).
pub struct HintClassifier {
    ac: AhoCorasick,
}

impl std::fmt::Debug for HintClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HintClassifier")
    }
}

impl HintClassifier {
    /// Builds the automaton.
    pub fn new() -> Result<HintClassifier, aho_corasick::BuildError> {
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(SUBSTRING_PATTERNS.iter().map(|(p, _)| p.as_bytes()))?;
        Ok(HintClassifier { ac })
    }

    /// Hints of a field/header/cookie name, or of the words before a value in free text.
    pub fn classify(&self, name: &[u8]) -> KeyHints {
        let name = if name.len() > 96 {
            &name[name.len() - 96..]
        } else {
            name
        };
        let mut lower = [0u8; 96];
        let lower = &mut lower[..name.len()];
        let mut hints = 0u32;
        // Split into words: non-alphanumeric ASCII separates, lower→upper and letter↔digit
        // transitions separate; non-ASCII bytes separate (Chinese handled by the automaton).
        let mut words: [(u8, u8); 12] = [(0, 0); 12];
        let mut nw = 0usize;
        let mut start: Option<usize> = None;
        let mut prev_kind = 0u8; // 1 lower, 2 upper, 3 digit
        let mut has_non_ascii = false;
        for (i, &b) in name.iter().enumerate() {
            lower[i] = b.to_ascii_lowercase();
            let kind = match b {
                b'a'..=b'z' => 1,
                b'A'..=b'Z' => 2,
                b'0'..=b'9' => 3,
                _ => 0,
            };
            if b >= 0x80 {
                has_non_ascii = true;
            }
            let boundary = kind == 0
                || (kind == 2 && prev_kind == 1)
                || (kind == 3 && prev_kind != 3 && prev_kind != 0)
                || (kind != 3 && prev_kind == 3);
            if boundary
                && let Some(s) = start.take()
                && nw < words.len()
            {
                words[nw] = (s as u8, i as u8);
                nw += 1;
            }
            if kind != 0 && start.is_none() {
                start = Some(i);
            }
            prev_kind = kind;
        }
        if let Some(s) = start
            && nw < words.len()
        {
            words[nw] = (s as u8, name.len() as u8);
            nw += 1;
        }
        let word = |k: usize| &lower[usize::from(words[k].0)..usize::from(words[k].1)];
        let mut any_long_unmatched = false;
        for k in 0..nw {
            let w = word(k);
            let h = word_hints(w);
            hints |= h.0;
            hints |= suppress_word(w);
            if k + 1 < nw {
                hints |= pair_hints(w, word(k + 1)).0;
            }
            if h.0 == 0 && w.len() >= 6 {
                any_long_unmatched = true;
            }
        }
        if any_long_unmatched || has_non_ascii {
            for m in self.ac.find_overlapping_iter(&*lower) {
                hints |= SUBSTRING_PATTERNS[m.pattern().as_usize()].1.0;
            }
        }
        // `idCard` is an identity card, not a bank card.
        if hints & KeyHints::IDCARD.0 != 0
            && !(0..nw).any(|k| matches!(word(k), b"bank" | b"yhk" | b"debit" | b"credit"))
        {
            hints &= !KeyHints::CARD.0;
        }
        // A single-word name that is one of the suppressing words themselves is not a hint.
        if hints & SUPPRESS_NAME != 0 {
            hints &= !(KeyHints::NAME_STRONG.0 | KeyHints::NAME_WEAK.0);
        }
        if hints & SUPPRESS_SECRET != 0 {
            hints &=
                !(KeyHints::PASSWORD.0 | KeyHints::TOKEN.0 | KeyHints::OTP.0 | KeyHints::CVV.0);
        }
        if hints & SUPPRESS_ADDRESS != 0 {
            hints &= !KeyHints::ADDRESS.0;
        }
        if hints & KeyHints::NAME_STRONG.0 != 0 {
            hints &= !KeyHints::NAME_WEAK.0;
        }
        // Positive context outranks the negative numeric hint (`cardNo` has `no`, `idNum` …).
        let mut out = KeyHints(hints & !(SUPPRESS_NAME | SUPPRESS_SECRET | SUPPRESS_ADDRESS));
        if out.without(KeyHints::NEGNUM).positive() {
            out = out.without(KeyHints::NEGNUM);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str) -> KeyHints {
        HintClassifier::new().unwrap().classify(name.as_bytes())
    }

    #[test]
    fn english_pinyin_and_chinese_names() {
        assert!(h("idCardNo").any(KeyHints::IDCARD));
        assert!(h("id_card").any(KeyHints::IDCARD));
        assert!(h("sfzh").any(KeyHints::IDCARD));
        assert!(h("身份证号码").any(KeyHints::IDCARD));
        assert!(h("mobilePhone").any(KeyHints::PHONE));
        assert!(h("userpassword").any(KeyHints::PASSWORD));
        assert!(h("登录密码").any(KeyHints::PASSWORD));
        assert!(h("口令").any(KeyHints::PASSWORD));
        assert!(h("X-Api-Key").any(KeyHints::TOKEN));
        assert!(h("smsCode").any(KeyHints::OTP));
        assert!(h("bankCardNo").any(KeyHints::CARD));
        assert!(h("realName").any(KeyHints::NAME_STRONG));
        assert!(h("name").any(KeyHints::NAME_WEAK));
        assert!(h("orderNo").any(KeyHints::NEGNUM));
    }

    #[test]
    fn suppressions() {
        assert!(!h("userName").any(KeyHints::NAME_WEAK.or(KeyHints::NAME_STRONG)));
        assert!(!h("username").any(KeyHints::NAME_WEAK.or(KeyHints::NAME_STRONG)));
        assert!(!h("fileName").any(KeyHints::NAME_WEAK.or(KeyHints::NAME_STRONG)));
        assert!(!h("passwordLength").any(KeyHints::PASSWORD));
        assert!(!h("tokenExpiresIn").any(KeyHints::TOKEN));
        assert!(!h("ipAddress").any(KeyHints::ADDRESS));
        assert!(
            !h("company").any(KeyHints::CARD),
            "short words match exactly only"
        );
        assert!(!h("hotel").any(KeyHints::PHONE));
        assert!(!h("cardNo").any(KeyHints::NEGNUM));
    }
}
