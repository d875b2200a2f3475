#!/usr/bin/env python3
"""Labelled evaluation corpus for apitap-labels (issue 6, R-SEN-1).

Generates realistic API bodies (JSON, form, XML, multipart, CSV, free text, URLs) that embed
fake sensitive values from Faker (zh_CN, en_US and European locales) with ground truth, plus
hard negatives: random 15-19 digit numbers, order numbers, timestamps, Luhn-valid non-card
numbers (IMEIs, random), checksum-valid ID numbers with impossible dates, invalid IBANs,
random 11-digit numbers with unallocated prefixes, random 18-character identifiers.

python-stdnum is used as an independent checksum oracle: every positive is checked with it
before it is written, every "bad" negative is checked to fail it.

Output: labels/tests/data/corpus.jsonl.gz, one sample per line:
  {"id", "kind", "dir", "ct", "body", "path", "query",
   "truth": [[label, canonical value], ...],       # every sensitive value in the sample
   "neg":   [[category, canonical value], ...]}    # hard negatives embedded in the sample
The file is deterministic for a given seed (gzip mtime 0). Run:
  pip install Faker python-stdnum && python3 labels/eval/gen_corpus.py
"""
import base64
import datetime
import gzip
import io
import ipaddress
import json
import os
import random
import string
import sys
import urllib.parse

from faker import Faker
from stdnum import iban as std_iban
from stdnum import luhn as std_luhn
from stdnum.cn import ric as std_ric
from stdnum.cn import uscc as std_uscc

SEED = 20240601
N_SAMPLES = int(os.environ.get("N_SAMPLES", "6000"))
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "corpus.jsonl.gz")

rnd = random.Random(SEED)
zh = Faker("zh_CN")
zh.seed_instance(SEED)
en = Faker("en_US")
en.seed_instance(SEED + 1)
EU = []
for i, loc in enumerate(["en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL"]):
    f = Faker(loc)
    f.seed_instance(SEED + 10 + i)
    EU.append(f)

# --- value generators -------------------------------------------------------------------

MOBILE_SEGMENTS = (
    list(range(130, 140)) + list(range(145, 150)) + [150, 151, 152, 153, 155, 156, 157, 158, 159]
    + [162, 165, 166, 167] + list(range(170, 179)) + list(range(180, 190))
    + [190, 191, 192, 193, 195, 196, 197, 198, 199]
)
# Real issuer BINs of Chinese banks (a subset: the corpus should not simply mirror the table).
CN_BINS = [
    "622202", "621226", "622208", "955880", "622848", "622845", "955990", "621661", "601382",
    "621700", "622700", "436742", "622260", "622262", "622588", "621483", "621799", "622188",
    "622690", "622660", "622622", "621626", "622909", "622521", "622630", "625331", "625998",
    "622155", "628222", "622568",
]
# UnionPay IINs not in the issuer table (only ever generated with card context).
UNIONPAY_OTHER = ["620100", "623501", "624321", "625811", "627066", "629999", "623800"]
CARD_TYPES = ["visa16", "visa13", "visa19", "mastercard", "amex", "discover", "jcb16", "diners"]
AREA_CODES = ["010", "020", "021", "022", "023", "024", "025", "027", "028", "029",
              "0755", "0571", "0512", "0532", "0731", "0871", "0591", "0351", "0471", "0898"]
USCC_ALPHA = "0123456789ABCDEFGHJKLMNPQRTUWXY"
PROVINCES = [11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
             50, 51, 52, 53, 54, 61, 62, 63, 64, 65]


def digits(n):
    return "".join(rnd.choice(string.digits) for _ in range(n))


def luhn_complete(prefix, length):
    body = prefix + digits(length - len(prefix) - 1)
    return body + std_luhn.calc_check_digit(body)


def ric_ok(v):
    """Oracle: GB 11643 check digit and birth date via python-stdnum (the county table of
    stdnum is stricter than the province prefix the standard defines, so it is not used)."""
    try:
        std_ric.get_birth_date(v)
    except Exception:
        return False
    return len(v) == 18 and v[:17].isdigit() and v[-1] == std_ric.calc_check_digit(v)


def gen_prc_id():
    # Faker's area code, but a birth date from our seeded generator: Faker derives birth dates
    # from today's date, which would make the corpus change from day to day.
    area = zh.ssn()[:6]
    born = datetime.date(1940, 1, 1) + datetime.timedelta(days=rnd.randrange(65 * 365))
    body = area + born.strftime("%Y%m%d") + "%03d" % rnd.randrange(1000)
    v = body + std_ric.calc_check_digit(body + "0")
    assert ric_ok(v), v
    return v


def gen_uscc():
    while True:
        auth = rnd.choice("159")
        cat = rnd.choice({"1": "123", "5": "123", "9": "123"}[auth])
        region = "%02d%04d" % (rnd.choice(PROVINCES), rnd.randrange(100, 9999))
        org8 = "".join(rnd.choice(string.digits + "ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
        w = [3, 7, 9, 10, 5, 8, 4, 2]
        val = lambda c: int(c) if c.isdigit() else ord(c) - 55
        c9 = 11 - sum(val(c) * x for c, x in zip(org8, w)) % 11
        c9 = {10: "X", 11: "0"}.get(c9, str(c9))
        body = auth + cat + region + org8 + c9
        code = body + std_uscc.calc_check_digit(body)
        if std_uscc.is_valid(code):
            return code


def gen_mobile():
    return str(rnd.choice(MOBILE_SEGMENTS)) + digits(8)


def fmt_mobile(m):
    r = rnd.random()
    if r < 0.70:
        return m
    if r < 0.78:
        return "+86 %s %s %s" % (m[:3], m[3:7], m[7:])
    if r < 0.85:
        return "+86" + m
    if r < 0.92:
        return "%s-%s-%s" % (m[:3], m[3:7], m[7:])
    return "%s %s %s" % (m[:3], m[3:7], m[7:])


def gen_landline():
    area = rnd.choice(AREA_CODES)
    sub_len = 8 if len(area) == 3 else rnd.choice([7, 8])
    sub = rnd.choice("23456789") + digits(sub_len - 1)
    return area + sub, area + "-" + sub


def gen_cn_card(length=None):
    length = length or rnd.choice([16, 16, 19, 19, 19, 17, 18])
    return luhn_complete(rnd.choice(CN_BINS), length)


def gen_unionpay_other():
    return luhn_complete(rnd.choice(UNIONPAY_OTHER), rnd.choice([16, 19]))


def gen_credit_card():
    while True:
        v = en.credit_card_number(card_type=rnd.choice(CARD_TYPES))
        # Faker's JCB numbers start with any "35"; the JCB IIN range is 3528-3589.
        if v.startswith("35") and not 3528 <= int(v[:4]) <= 3589:
            continue
        if std_luhn.is_valid(v):
            return v


def fmt_card(c):
    if rnd.random() < 0.8:
        return c
    return " ".join(c[i:i + 4] for i in range(0, len(c), 4))


def gen_iban():
    v = rnd.choice(EU).iban()
    assert std_iban.is_valid(v), v
    return v


def fmt_iban(v):
    return v if rnd.random() < 0.75 else " ".join(v[i:i + 4] for i in range(0, len(v), 4))


def gen_ssn():
    while True:
        v = en.ssn()
        a, g, s = v.split("-")
        if a not in ("000", "666") and a[0] != "9" and g != "00" and s != "0000":
            return v


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def gen_jwt():
    alg = rnd.choice(["HS256", "RS256", "ES256", "none"])
    hdr = {"alg": alg, "typ": "JWT"}
    claims = {"sub": str(rnd.randrange(10**6)), "iat": 1717000000 + rnd.randrange(10**6)}
    if rnd.random() < 0.7:
        claims["exp"] = claims["iat"] + 3600
    sig = "" if alg == "none" else b64url(os.urandom(0) + bytes(rnd.randrange(256) for _ in range(32)))
    return "%s.%s.%s" % (b64url(json.dumps(hdr).encode()), b64url(json.dumps(claims).encode()), sig)


def gen_aws():
    return rnd.choice(["AKIA", "ASIA"]) + "".join(rnd.choice(string.ascii_uppercase + "234567") for _ in range(16))


def gen_passport():
    return rnd.choice("EG") + digits(8)


def gen_permit():
    return "C" + digits(8)


# --- hard negatives ---------------------------------------------------------------------

def neg_random_numeric():
    n = rnd.randint(15, 19)
    return rnd.choice("123456789") + digits(n - 1)


def neg_luhn_noncard():
    # Luhn-valid numbers that are not cards: IMEIs (15 digits, TAC 35/86/01) and random ones.
    if rnd.random() < 0.4:
        return luhn_complete(rnd.choice(["35", "86", "01"]), 15)
    n = rnd.randint(15, 19)
    return luhn_complete(rnd.choice("123456789"), n)


def neg_order_no():
    return "20%02d%02d%02d" % (rnd.randint(18, 25), rnd.randint(1, 12), rnd.randint(1, 28)) + digits(rnd.choice([8, 10, 11]))


def neg_timestamp():
    return rnd.choice([str(1500000000 + rnd.randrange(3 * 10**8)), str(1500000000000 + rnd.randrange(3 * 10**11))])


def neg_bad_date_id():
    # Valid province, impossible date, correct GB 11643 check digit.
    prov = "%02d" % rnd.choice(PROVINCES)
    area = prov + "%04d" % rnd.randrange(100, 9999)
    y = rnd.randint(1950, 2005)
    m, d = rnd.choice([(13, 1), (0, 10), (2, 30), (4, 31), (6, 31), (11, 31), (2, 29), (12, 32), (rnd.randint(14, 99), 5)])
    if m == 2 and d == 29:
        y = rnd.choice([1951, 1953, 1955, 1957, 1999, 2001, 2003])
    body = "%s%04d%02d%02d%03d" % (area, y, m, d, rnd.randrange(1000))
    code = body + std_ric.calc_check_digit(body + "0")
    assert not ric_ok(code), code
    return code


def neg_bad_iban():
    v = gen_iban()
    while True:
        c = v[:2] + "%02d" % rnd.randrange(100) + v[4:]
        if not std_iban.is_valid(c):
            return c


def neg_unallocated_mobile():
    return str(rnd.choice([100, 101, 102, 110, 112, 120, 121, 128, 140, 141, 144, 154, 160, 161, 164, 168, 169, 179, 194])) + digits(8)


def neg_request_id():
    return "".join(rnd.choice(string.ascii_uppercase + string.digits) for _ in range(18))


# --- keys --------------------------------------------------------------------------------

KEYS = {
    "prc_id": ["idCard", "id_card_no", "idNo", "sfzh", "certNo", "身份证号", "identityNumber", "zjhm", "idCardNumber"],
    "uscc": ["creditCode", "uscc", "tyshxydm", "统一社会信用代码", "socialCreditCode", "taxNo"],
    "mobile": ["mobile", "phone", "phoneNumber", "tel", "sjh", "手机号", "contactPhone", "mobileNo", "cellphone"],
    "landline": ["telephone", "officePhone", "联系电话", "homeTel", "fax"],
    "bank_card": ["bankCardNo", "cardNo", "card_number", "bankAccount", "acctNo", "银行卡号", "payCard", "pan"],
    "credit_card": ["creditCardNumber", "cardNumber", "card_no", "pan", "信用卡号"],
    "iban": ["iban", "accountIban", "beneficiaryIban", "bankAccount"],
    "email": ["email", "mail", "contactEmail", "邮箱", "userEmail"],
    "us_ssn": ["ssn", "socialSecurityNumber", "taxpayerSsn"],
    "cn_passport": ["passportNo", "passport", "护照号码", "huzhao"],
    "hk_macau_permit": ["permitNo", "gatxz", "港澳通行证号", "hkMacauPermit"],
    "person_name": ["realName", "name", "custName", "姓名", "holderName", "fullName", "xm"],
    "address": ["address", "homeAddress", "addr", "地址", "contactAddress", "dizhi"],
    "ip_public": ["clientIp", "ip", "loginIp", "remoteAddr"],
    "ip_private": ["serverIp", "ip", "innerIp", "hostIp"],
    "jwt": ["token", "accessToken", "id_token", "jwt"],
    "aws_access_key": ["awsAccessKeyId", "accessKeyId", "aws_key"],
    "license_plate": ["plateNo", "licensePlate", "车牌号", "cph", "vehicleNo"],
    "password": ["password", "pwd", "passwd", "loginPassword", "密码", "userPwd", "口令"],
}
NEUTRAL_KEYS = ["value", "data", "remark", "info", "content", "detail", "extra", "memo"]
NUMERIC_NEUTRAL_KEYS = ["refNo", "serialNo", "bizId", "code", "number", "value", "seq", "traceNo", "voucherNo", "ticketNo", "deviceSn", "batchNo"]
# Labels whose values validate on their own and may appear under neutral keys.
SELF_VALIDATING = {"prc_id", "uscc", "mobile", "email", "iban", "ip_public", "ip_private", "jwt", "aws_access_key", "bank_card_cn", "license_plate", "us_ssn"}


def positive(label):
    """(label, display value, canonical value, may_use_neutral_key)."""
    if label == "prc_id":
        v = gen_prc_id()
        disp = v.lower() if v.endswith("X") and rnd.random() < 0.3 else v
        return label, disp, v, True
    if label == "uscc":
        v = gen_uscc()
        return label, v, v, True
    if label == "mobile":
        m = gen_mobile()
        return label, fmt_mobile(m), m, True
    if label == "landline":
        canon, disp = gen_landline()
        return label, disp, canon, False
    if label == "bank_card":
        if rnd.random() < 0.15:
            c = gen_unionpay_other()
            return label, fmt_card(c), c, False
        c = gen_cn_card()
        return label, fmt_card(c), c, True
    if label == "credit_card":
        c = gen_credit_card()
        return label, fmt_card(c), c, False
    if label == "iban":
        v = gen_iban()
        return label, fmt_iban(v), v, True
    if label == "email":
        v = rnd.choice([zh, en]).email()
        return label, v, v.lower(), True
    if label == "us_ssn":
        v = gen_ssn()
        return label, v, v.replace("-", ""), True
    if label == "cn_passport":
        v = gen_passport()
        return label, v, v, False
    if label == "hk_macau_permit":
        v = gen_permit()
        return label, v, v, False
    if label == "person_name":
        v = zh.name() if rnd.random() < 0.75 else en.name()
        return label, v, v, False
    if label == "address":
        v = zh.address().replace("\n", " ")
        return label, v, v, False
    if label == "ip_public":
        v = en.ipv4_public() if rnd.random() < 0.8 else en.ipv6()
        # Faker's IPv6 addresses are random: label them by the registry (ipaddress).
        lab = "ip_public" if ipaddress.ip_address(v).is_global else "ip_private"
        return lab, v, v, True
    if label == "ip_private":
        v = en.ipv4_private()
        return label, v, v, True
    if label == "jwt":
        v = gen_jwt()
        return label, v, v, True
    if label == "aws_access_key":
        v = gen_aws()
        return label, v, v, True
    if label == "license_plate":
        v = zh.license_plate()
        return label, v, v, True
    if label == "password":
        v = rnd.choice([en.password(length=rnd.randint(8, 16)), rnd.choice(["123456", "password", "qwerty123", "5201314", "Aa123456"])])
        return label, v, v, False
    raise ValueError(label)


LABEL_WEIGHTS = [
    ("prc_id", 12), ("uscc", 6), ("mobile", 14), ("landline", 4), ("bank_card", 12), ("credit_card", 6),
    ("iban", 6), ("email", 6), ("us_ssn", 3), ("cn_passport", 3), ("hk_macau_permit", 2),
    ("person_name", 8), ("address", 5), ("ip_public", 3), ("ip_private", 2), ("jwt", 2),
    ("aws_access_key", 1), ("license_plate", 2), ("password", 4),
]
LABELS, WEIGHTS = zip(*LABEL_WEIGHTS)

NEG_GENS = [
    ("random_numeric", neg_random_numeric, NUMERIC_NEUTRAL_KEYS, 10),
    ("luhn_noncard", neg_luhn_noncard, NUMERIC_NEUTRAL_KEYS + ["imei", "deviceId"], 6),
    ("order_no", neg_order_no, ["orderNo", "orderId", "tradeNo", "outTradeNo", "订单号"], 5),
    ("timestamp", neg_timestamp, ["timestamp", "ts", "createTime", "updatedAt", "time"], 5),
    ("bad_date_id", neg_bad_date_id, ["idCard", "sfzh", "value", "idNo"], 3),
    ("bad_iban", neg_bad_iban, ["iban", "account", "value"], 2),
    ("unallocated_mobile", neg_unallocated_mobile, ["phone", "value", "code", "number"], 3),
    ("request_id", neg_request_id, ["requestId", "traceId", "nonce", "sign"], 3),
]
NEG_WEIGHTS = [w for *_, w in NEG_GENS]

FILLER = [
    ("status", lambda: rnd.choice(["ok", "success", "ACTIVE", "pending"])),
    ("code", lambda: rnd.choice([0, 200, 1000])),
    ("msg", lambda: rnd.choice(["操作成功", "success", "查询成功", "OK"])),
    ("amount", lambda: round(rnd.uniform(1, 99999), 2)),
    ("count", lambda: rnd.randint(0, 500)),
    ("uuid", lambda: en.uuid4()),
    ("createdAt", lambda: (datetime.datetime(2020, 1, 1) + datetime.timedelta(seconds=rnd.randrange(5 * 365 * 86400))).isoformat()),
    ("gender", lambda: rnd.choice(["M", "F", "男", "女"])),
    ("version", lambda: "%d.%d.%d" % (rnd.randint(0, 9), rnd.randint(0, 20), rnd.randint(0, 99))),
    ("page", lambda: rnd.randint(1, 30)),
    ("remark", lambda: rnd.choice([zh.sentence(), en.sentence()])),
    ("companyName", lambda: zh.company()),
]


def pick_positive():
    label = rnd.choices(LABELS, WEIGHTS)[0]
    lab, disp, canon, neutral_ok = positive(label)
    if neutral_ok and rnd.random() < 0.25:
        key = rnd.choice(NEUTRAL_KEYS)
    else:
        key = rnd.choice(KEYS[lab])
    return lab, key, disp, canon


def pick_negative():
    cat, gen, keys, _ = rnd.choices(NEG_GENS, NEG_WEIGHTS)[0]
    return cat, rnd.choice(keys), gen()


def as_json_value(label, disp):
    # Numbers are sometimes JSON numbers, not strings.
    if label in ("mobile", "bank_card", "timestamp", "random_numeric", "order_no") and disp.isdigit() and rnd.random() < 0.3:
        return int(disp)
    return disp


def record():
    """One record: fields (key, value) plus its truth and negatives."""
    fields, truth, neg = [], [], []
    for _ in range(rnd.randint(1, 4)):
        lab, key, disp, canon = pick_positive()
        fields.append((key, as_json_value(lab, disp)))
        truth.append([lab, canon])
    for _ in range(rnd.randint(0, 3)):
        cat, key, val = pick_negative()
        fields.append((key, as_json_value(cat, val)))
        neg.append([cat, val])
    for _ in range(rnd.randint(1, 4)):
        k, g = rnd.choice(FILLER)
        v = g()
        if k == "gender":
            truth.append(["gender", v])
        fields.append((k, v))
    rnd.shuffle(fields)
    # Duplicate keys would collide in a dict: suffix them.
    seen, out = {}, []
    for k, v in fields:
        if k in seen:
            seen[k] += 1
            k = "%s%d" % (k, seen[k])
        else:
            seen[k] = 0
        out.append((k, v))
    return out, truth, neg


def json_body():
    n = rnd.choice([1, 1, 1, 2, 3, 5, 10])
    recs, truth, neg = [], [], []
    for _ in range(n):
        f, t, g = record()
        recs.append(dict(f))
        truth += t
        neg += g
    if n == 1 and rnd.random() < 0.5:
        doc = recs[0]
    elif n == 1:
        doc = {"code": 0, "msg": "success", "data": recs[0]}
    else:
        doc = {"code": 0, "data": {"total": n, "list": recs}}
    ascii_ = rnd.random() < 0.2
    return "application/json", json.dumps(doc, ensure_ascii=ascii_), truth, neg


def form_body():
    f, truth, neg = record()
    return "application/x-www-form-urlencoded", urllib.parse.urlencode([(k, str(v)) for k, v in f]), truth, neg


def xml_escape(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_body():
    n = rnd.choice([1, 1, 2, 3])
    parts, truth, neg = [], [], []
    for _ in range(n):
        f, t, g = record()
        parts.append("<record>" + "".join("<%s>%s</%s>" % (k, xml_escape(v), k) for k, v in f) + "</record>")
        truth += t
        neg += g
    body = '<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><QueryResponse>%s</QueryResponse></soap:Body></soap:Envelope>' % "".join(parts)
    return "text/xml; charset=utf-8", body, truth, neg


def multipart_body():
    f, truth, neg = record()
    b = "----apitapBoundary%d" % rnd.randrange(10**6)
    chunks = []
    for k, v in f:
        chunks.append('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (b, k, v))
    chunks.append('--%s\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG....\r\n' % b)
    chunks.append("--%s--\r\n" % b)
    return "multipart/form-data; boundary=%s" % b, "".join(chunks), truth, neg


def csv_body():
    n = rnd.randint(2, 12)
    cols = [("姓名", "person_name"), ("身份证号", "prc_id"), ("手机号", "mobile"), ("银行卡号", "bank_card"), ("orderNo", "order_no")]
    cols = rnd.sample(cols, rnd.randint(2, len(cols)))
    lines, truth, neg = [",".join(c for c, _ in cols)], [], []
    for _ in range(n):
        row = []
        for _, lab in cols:
            if lab == "order_no":
                v = neg_order_no()
                neg.append(["order_no", v])
                row.append(v)
            elif lab == "person_name":
                v = zh.name()
                truth.append([lab, v])
                row.append(v)
            else:
                _, disp, canon, _ = positive(lab)
                disp = disp.replace(" ", "")
                canon = canon if lab != "mobile" else canon
                truth.append([lab, canon])
                row.append(disp.replace("+86", "") if lab == "mobile" else disp)
        lines.append(",".join(row))
    return "text/csv", "\n".join(lines) + "\n", truth, neg


TEXT_TEMPLATES = {
    "mobile": ["客户手机号：{v}，请尽快联系。", "Call me at {v} tomorrow.", "联系方式 {v}"],
    "prc_id": ["身份证号码{v}已实名认证", "ID number {v} verified."],
    "bank_card": ["您尾号的银行卡号 {v} 已绑定", "card number: {v}"],
    "email": ["请发送到 {v} 谢谢", "mail to {v}."],
    "uscc": ["统一社会信用代码：{v}", "企业信用代码 {v}"],
    "iban": ["Please transfer to IBAN {v} today.", "收款账户 IBAN: {v}"],
}


def text_body():
    parts, truth, neg = [], [], []
    for _ in range(rnd.randint(1, 3)):
        lab = rnd.choice(list(TEXT_TEMPLATES))
        _, disp, canon, _ = positive(lab)
        if lab == "bank_card" and canon[:6] in UNIONPAY_OTHER:
            canon = gen_cn_card()
            disp = canon
        parts.append(rnd.choice(TEXT_TEMPLATES[lab]).format(v=disp))
        truth.append([lab, canon])
    if rnd.random() < 0.5:
        v = neg_order_no()
        parts.append("订单号 %s 已发货" % v)
        neg.append(["order_no", v])
    if rnd.random() < 0.5:
        v = neg_random_numeric()
        parts.append("流水号 %s" % v)
        neg.append(["random_numeric", v])
    return "text/plain; charset=utf-8", " ".join(parts), truth, neg


def url_sample():
    f, truth, neg = record()
    q = [(k, str(v)) for k, v in f if not isinstance(v, float)]
    return urllib.parse.urlencode(q), truth, neg


KINDS = [("json", 45), ("form", 12), ("xml", 10), ("multipart", 6), ("csv", 6), ("text", 8), ("url", 13)]


def main():
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as gz:
        for i in range(N_SAMPLES):
            kind = rnd.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
            s = {"id": i, "kind": kind, "dir": rnd.choice(["request", "response"])}
            if kind == "url":
                q, truth, neg = url_sample()
                s.update(dir="request", ct=None, body="", path="/api/v1/query", query=q)
            else:
                ct, body, truth, neg = {"json": json_body, "form": form_body, "xml": xml_body,
                                        "multipart": multipart_body, "csv": csv_body, "text": text_body}[kind]()
                s.update(ct=ct, body=body, path="/api/v1/customer", query=None)
            s["truth"] = truth
            s["neg"] = neg
            gz.write((json.dumps(s, ensure_ascii=False) + "\n").encode())
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as fh:
        fh.write(out.getvalue())
    print("wrote %s (%d bytes, %d samples)" % (OUT, len(out.getvalue()), N_SAMPLES), file=sys.stderr)


if __name__ == "__main__":
    main()
