#!/usr/bin/env python3
"""apitap's evaluation target: a small login/data API and web site (Python 3 stdlib only).

It is the "real server" the attack tools of issue 7 are pointed at (hydra, ffuf, wfuzz,
patator, gobuster, wget, siege, wrk, curl) while the traffic is captured. Everything is
deterministic for a given --seed: accounts, passwords, PII, orders, OTP codes.

Endpoints
  GET  /  /about.html  /docs/  /docs/<page>.html  /products/  /products/<n>.html  /robots.txt
  GET  /login                      HTML form         POST /login  (form: 302 + cookie | 200 "Login failed")
  GET  /basic/                     HTTP Basic auth   (401 + WWW-Authenticate | 200 page)
  POST /api/login                  JSON {"username","password"} -> 200 {"token"} + Set-Cookie | 401
  POST /api/logout                 200
  POST /api/register               JSON {"username","password","phone"} -> 201 | 409 | 400
  POST /api/otp/send               JSON {"phone"} -> 200
  POST /api/otp/verify             JSON {"phone","code"} -> 200 {"token"} | 401
  GET  /api/me                     the caller's profile (PII)
  GET  /api/users/<id>             200 PII | 401 no token | 403 (--authz strict, not yours) | 404
  GET  /api/orders?page=N&size=M   the caller's orders, paginated
  GET  /api/export?from=ID&size=M  bulk user records with PII (size <= 500)
  GET  /healthz                    204

Authentication: a JWT-shaped HS256 token (sub = username) as `Authorization: Bearer` or the
`session` cookie.

The server writes its own access log (JSON lines: time, ip, port, method, path, status,
bytes, user), one line per response it started, flushed at once: the ground truth the
fixtures are checked against. It writes `--ready FILE` once it listens (no probe traffic).
"""

import argparse
import base64
import hashlib
import hmac
import html
import json
import random
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
SURNAME_PINYIN = [
    "wang", "li", "zhang", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou", "xu", "sun",
    "ma", "zhu", "hu", "guo", "he", "gao", "lin", "luo", "zheng", "liang", "xie", "song",
    "tang", "xu", "han", "feng", "deng", "cao", "peng", "zeng", "xiao", "tian", "dong", "yuan",
    "pan", "yu", "jiang", "cai", "yu", "du", "ye", "cheng", "su", "wei", "lv", "ding", "ren",
    "shen", "yao", "lu", "jiang", "cui", "zhong", "tan", "lu", "wang", "fan", "jin", "shi",
    "liao", "jia", "xia", "wei", "fu", "fang", "bai", "zou", "meng", "xiong", "qin", "qiu",
    "jiang", "yin", "xue", "yan", "duan", "lei", "hou", "long", "shi", "tao", "li", "he", "gu",
    "mao", "hao", "gong", "shao", "wan", "qian", "yan", "qin", "wu", "dai", "mo", "kong",
    "xiang", "tang",
]
GIVEN = [
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"),
    ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"),
    ("杰", "jie"), ("娟", "juan"), ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀英", "xiuying"),
    ("霞", "xia"), ("平", "ping"), ("刚", "gang"), ("桂英", "guiying"), ("建华", "jianhua"),
    ("文", "wen"), ("华", "hua"), ("建国", "jianguo"), ("晓东", "xiaodong"), ("婷", "ting"),
    ("欣怡", "xinyi"), ("子涵", "zihan"), ("浩然", "haoran"), ("宇轩", "yuxuan"), ("雨桐", "yutong"),
    ("思远", "siyuan"), ("梓萱", "zixuan"), ("俊杰", "junjie"), ("佳琪", "jiaqi"), ("志强", "zhiqiang"),
]
# Real county-level division codes (GB/T 2260) with their city, for ID numbers and addresses.
REGIONS = [
    ("110101", "北京市东城区"), ("110105", "北京市朝阳区"), ("110108", "北京市海淀区"),
    ("310104", "上海市徐汇区"), ("310115", "上海市浦东新区"), ("440106", "广州市天河区"),
    ("440305", "深圳市南山区"), ("330106", "杭州市西湖区"), ("320106", "南京市鼓楼区"),
    ("510107", "成都市武侯区"), ("420106", "武汉市武昌区"), ("610113", "西安市雁塔区"),
    ("500103", "重庆市渝中区"), ("120101", "天津市和平区"), ("370202", "青岛市市南区"),
    ("350203", "厦门市思明区"), ("430104", "长沙市岳麓区"), ("410105", "郑州市金水区"),
]
STREETS = ["中山路", "人民路", "解放路", "建设路", "长江路", "和平街", "学院路", "科技园路", "文化路", "南京路"]
MOBILE_PREFIXES = ["130", "131", "133", "135", "136", "137", "138", "139", "150", "151", "152",
                   "155", "158", "159", "176", "177", "180", "186", "187", "188", "189", "199"]
CARD_BINS = ["622202", "622848", "621700", "622588", "622700", "621226", "622609", "623058"]
# Passwords users chose: a few are in the wordlists attackers use (so attacks can succeed).
WEAK = ["123456", "password", "12345678", "qwerty", "abc123", "111111", "iloveyou", "123123",
        "admin", "welcome", "monkey", "dragon", "sunshine", "princess", "letmein", "football"]
PRODUCTS = ["保温杯", "蓝牙耳机", "机械键盘", "登山包", "电饭煲", "空气净化器", "运动鞋", "茶叶礼盒",
            "充电宝", "台灯", "行李箱", "咖啡机", "电动牙刷", "瑜伽垫", "路由器", "显示器"]


def gb11643_check(first17):
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    s = sum(int(c) * w for c, w in zip(first17, weights))
    return "10X98765432"[s % 11]


def luhn_complete(prefix):
    """Appends the Luhn check digit to `prefix`."""
    total = 0
    for i, c in enumerate(reversed(prefix)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


def build_users(seed, n):
    rng = random.Random(seed)
    users = []
    taken = set()
    for uid in range(1, n + 1):
        si = rng.randrange(len(SURNAMES))
        given, given_py = GIVEN[rng.randrange(len(GIVEN))]
        name = SURNAMES[si] + given
        base = SURNAME_PINYIN[si] + given_py
        style = rng.randrange(4)
        if style == 0:
            username = base
        elif style == 1:
            username = base + str(rng.randrange(1, 99))
        elif style == 2:
            username = given_py + "." + SURNAME_PINYIN[si]
        else:
            username = base + str(rng.randrange(1970, 2005))
        while username in taken:
            username += str(rng.randrange(10))
        taken.add(username)
        region, city = REGIONS[rng.randrange(len(REGIONS))]
        year = rng.randrange(1960, 2004)
        month = rng.randrange(1, 13)
        day = rng.randrange(1, 29)
        seq = rng.randrange(0, 1000)
        first17 = f"{region}{year:04d}{month:02d}{day:02d}{seq:03d}"
        id_card = first17 + gb11643_check(first17)
        phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(0, 10**8):08d}"
        card_len = rng.choice([16, 19])
        body = rng.choice(CARD_BINS) + "".join(str(rng.randrange(10)) for _ in range(card_len - 7))
        bank_card = luhn_complete(body)
        if rng.random() < 0.06:
            password = rng.choice(WEAK)
        else:
            password = (rng.choice(["Sun", "Moon", "Tiger", "Panda", "River", "Cloud", "Jade"])
                        + str(rng.randrange(100, 9999)) + rng.choice(["!", "@", "#", "", "."]))
        users.append({
            "id": uid,
            "username": username,
            "name": name,
            "id_card": id_card,
            "phone": phone,
            "email": f"{username}@{rng.choice(['qq.com', '163.com', '126.com', 'sina.com', 'foxmail.com'])}",
            "bank_card": bank_card,
            "address": f"{city}{rng.choice(STREETS)}{rng.randrange(1, 999)}号",
            "birthday": f"{year:04d}-{month:02d}-{day:02d}",
            "password": password,
            "balance": round(rng.uniform(0, 50000), 2),
        })
    # Well-known accounts the scenarios use (ids fixed, passwords documented in the README).
    users[0].update(username="admin", name="系统管理员", password="Adm1n!2024")
    users[1].update(username="alice", name="李爱丽", password="sunshine")
    users[2].update(username="bob", name="王博", password="River2024!")
    return users


def build_orders(seed, users):
    rng = random.Random(seed * 7919 + 1)
    orders = {}
    oid = 100000
    for u in users:
        mine = []
        for _ in range(rng.randrange(3, 45)):
            oid += 1
            qty = rng.randrange(1, 5)
            price = round(rng.uniform(9.9, 2999), 2)
            mine.append({
                "order_id": oid,
                "item": rng.choice(PRODUCTS),
                "qty": qty,
                "amount": round(qty * price, 2),
                "status": rng.choice(["paid", "shipped", "delivered", "delivered", "refunded"]),
                "created": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                "ship_to": u["address"],
                "phone": u["phone"],
            })
        orders[u["id"]] = mine
    return orders


def otp_code(seed, phone):
    """The 6-digit code the server 'sends' by SMS to `phone` (deterministic)."""
    h = hashlib.sha256(f"otp:{seed}:{phone}".encode()).digest()
    return f"{int.from_bytes(h[:4], 'big') % 1000000:06d}"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class App:
    def __init__(self, seed, n_users, authz, log_path):
        self.seed = seed
        self.authz = authz
        self.users = build_users(seed, n_users)
        self.by_name = {u["username"]: u for u in self.users}
        self.by_phone = {u["phone"]: u for u in self.users}
        self.orders = build_orders(seed, self.users)
        self.secret = hashlib.sha256(f"jwt:{seed}".encode()).digest()
        self.lock = threading.Lock()
        self.log = open(log_path, "a", encoding="utf-8")
        self.counter = 0

    def token(self, user):
        with self.lock:
            self.counter += 1
            n = self.counter
        header = b64url(b'{"alg":"HS256","typ":"JWT"}')
        now = int(time.time())
        payload = b64url(json.dumps({"sub": user["username"], "uid": user["id"], "iat": now,
                                     "exp": now + 3600, "jti": n}, separators=(",", ":")).encode())
        sig = b64url(hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{sig}"

    def verify(self, token):
        try:
            header, payload, sig = token.split(".")
            want = b64url(hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(want, sig):
                return None
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            if claims.get("exp", 0) < time.time():
                return None
            return self.by_name.get(claims.get("sub"))
        except (ValueError, TypeError, json.JSONDecodeError):
            return None

    def write_log(self, rec):
        line = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()


def public(u):
    return {k: v for k, v in u.items() if k != "password"}


PAGE = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{title} - 云商城</title></head>
<body><nav><a href="/">首页</a> | <a href="/products/">商品</a> | <a href="/docs/">文档</a> |
<a href="/about.html">关于我们</a> | <a href="/login">登录</a></nav>
<h1>{title}</h1>
{body}
</body></html>
"""
DOCS = ["getting-started", "api", "authentication", "orders", "export", "faq", "privacy", "terms"]
N_PRODUCTS = 150


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "yunshop/1.4"
    timeout = 30
    app = None  # set in main

    # -- plumbing -------------------------------------------------------------------------
    def version_string(self):
        return self.server_version

    def log_request(self, code="-", size="-"):
        try:
            code = int(code)
        except (TypeError, ValueError):
            code = 0
        ip, port = self.client_address[:2]
        self.app.write_log({
            "time": round(time.time(), 6),
            "ip": ip,
            "port": port,
            "method": getattr(self, "command", None) or "",
            "path": getattr(self, "path", None) or "",
            "status": code,
            "user": getattr(self, "_user", None),
        })

    def log_message(self, fmt, *args):  # no stderr chatter per request
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send(self, status, payload, ctype="application/json; charset=utf-8", headers=()):
        if isinstance(payload, (dict, list)):
            data = json.dumps(payload, ensure_ascii=False).encode()
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = payload
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def html(self, status, title, body, headers=()):
        self.send(status, PAGE.format(title=html.escape(title), body=body),
                  "text/html; charset=utf-8", headers)

    def caller(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return self.app.verify(auth[7:].strip())
        for part in self.headers.get("Cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == "session" and v:
                return self.app.verify(v)
        return None

    def json_body(self):
        raw = self.body()
        try:
            obj = json.loads(raw or b"{}")
            return obj if isinstance(obj, dict) else None
        except (ValueError, UnicodeDecodeError):
            return None

    def login_ok(self, user):
        token = self.app.token(user)
        self._user = user["username"]
        cookie = f"session={token}; Path=/; HttpOnly; SameSite=Lax"
        return token, cookie

    # -- routing --------------------------------------------------------------------------
    def do_GET(self):
        self._user = None
        url = urllib.parse.urlsplit(self.path)
        path, q = url.path, urllib.parse.parse_qs(url.query)
        if path == "/healthz":
            return self.send(204, b"")
        if path.startswith("/api/"):
            return self.api_get(path, q)
        if path == "/basic/" or path == "/basic":
            return self.basic()
        return self.site(path)

    def do_HEAD(self):
        return self.do_GET()

    def do_POST(self):
        self._user = None
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if path == "/login":
            return self.form_login()
        if path == "/api/login":
            return self.api_login()
        if path == "/api/logout":
            self.body()
            u = self.caller()
            self._user = u and u["username"]
            return self.send(200, {"ok": True}, headers=[("Set-Cookie", "session=; Path=/; Max-Age=0")])
        if path == "/api/register":
            return self.register()
        if path == "/api/otp/send":
            return self.otp_send()
        if path == "/api/otp/verify":
            return self.otp_verify()
        self.body()
        return self.send(404, {"error": "not found"})

    # -- site -----------------------------------------------------------------------------
    def site(self, path):
        if path in ("/", "/index.html"):
            items = "".join(f'<li><a href="/products/{i}.html">{PRODUCTS[i % len(PRODUCTS)]} {i}号</a></li>'
                            for i in range(1, 9))
            return self.html(200, "云商城", f"<p>欢迎光临。</p><ul>{items}</ul>"
                             '<p><a href="/products/">全部商品</a> <a href="/docs/api.html">开放接口</a></p>')
        if path == "/robots.txt":
            return self.send(200, "User-agent: *\nDisallow: /admin/\nDisallow: /api/\n", "text/plain")
        if path == "/about.html":
            return self.html(200, "关于我们", "<p>云商城成立于2015年，总部位于杭州。</p>"
                             '<p>客服电话 400-800-1234。<a href="/docs/privacy.html">隐私政策</a></p>')
        if path == "/docs/" or path == "/docs":
            links = "".join(f'<li><a href="/docs/{d}.html">{d}</a></li>' for d in DOCS)
            return self.html(200, "文档", f"<ul>{links}</ul>")
        if path.startswith("/docs/") and path.endswith(".html") and path[6:-5] in DOCS:
            d = path[6:-5]
            i = DOCS.index(d)
            nxt = DOCS[(i + 1) % len(DOCS)]
            return self.html(200, d, f"<p>{d} 文档内容。</p>" * 5 +
                             f'<p><a href="/docs/{nxt}.html">下一篇</a> <a href="/docs/">目录</a></p>')
        if path == "/products/" or path == "/products":
            links = "".join(f'<li><a href="/products/{i}.html">商品 {i}</a></li>' for i in range(1, N_PRODUCTS + 1))
            return self.html(200, "全部商品", f"<ul>{links}</ul>")
        if path.startswith("/products/") and path.endswith(".html"):
            try:
                i = int(path[10:-5])
            except ValueError:
                i = 0
            if 1 <= i <= N_PRODUCTS:
                rng = random.Random(self.app.seed * 1000 + i)
                nxt = i % N_PRODUCTS + 1
                return self.html(200, f"{PRODUCTS[i % len(PRODUCTS)]} {i}号",
                                 f"<p>价格 ¥{rng.uniform(9, 3000):.2f}，库存 {rng.randrange(0, 500)}。</p>"
                                 f'<p><a href="/products/{nxt}.html">下一个</a> <a href="/products/">返回列表</a>'
                                 f' <a href="/login">登录购买</a></p>')
        if path == "/login":
            return self.html(200, "登录", '<form method="post" action="/login">'
                             '<input name="username"><input name="password" type="password">'
                             '<button>登录</button></form>')
        return self.html(404, "页面不存在", "<p>404 Not Found</p>")

    def basic(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, pw = "", ""
            u = self.app.by_name.get(user)
            if u and hmac.compare_digest(u["password"], pw):
                self._user = user
                return self.html(200, "运维后台", f"<p>欢迎 {html.escape(u['name'])}</p>")
        return self.html(401, "需要认证", "<p>401 Unauthorized</p>",
                         headers=[("WWW-Authenticate", 'Basic realm="ops"')])

    def form_login(self):
        raw = self.body()
        form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"))
        user = (form.get("username") or [""])[0]
        pw = (form.get("password") or [""])[0]
        u = self.app.by_name.get(user)
        if u and hmac.compare_digest(u["password"], pw):
            _, cookie = self.login_ok(u)
            return self.send(302, b"", "text/html", headers=[("Location", "/"), ("Set-Cookie", cookie)])
        return self.html(200, "登录", "<p class=\"error\">Login failed: wrong username or password</p>"
                         '<form method="post" action="/login"><input name="username">'
                         '<input name="password" type="password"><button>登录</button></form>')

    # -- API ------------------------------------------------------------------------------
    def api_login(self):
        req = self.json_body()
        if req is None:
            return self.send(400, {"error": "bad request"})
        u = self.app.by_name.get(str(req.get("username", "")))
        if u and hmac.compare_digest(u["password"], str(req.get("password", ""))):
            token, cookie = self.login_ok(u)
            return self.send(200, {"token": token, "user_id": u["id"], "expires_in": 3600},
                             headers=[("Set-Cookie", cookie)])
        return self.send(401, {"error": "invalid credentials"})

    def register(self):
        req = self.json_body()
        if not req or not req.get("username") or not req.get("password"):
            return self.send(400, {"error": "username and password required"})
        if req["username"] in self.app.by_name:
            return self.send(409, {"error": "username taken"})
        return self.send(201, {"id": len(self.app.users) + 1, "username": req["username"]})

    def otp_send(self):
        req = self.json_body()
        if not req or not req.get("phone"):
            return self.send(400, {"error": "phone required"})
        return self.send(200, {"sent": True, "expires_in": 300})

    def otp_verify(self):
        req = self.json_body()
        if not req or not req.get("phone"):
            return self.send(400, {"error": "phone and code required"})
        phone, code = str(req.get("phone")), str(req.get("code", ""))
        u = self.app.by_phone.get(phone)
        if u and hmac.compare_digest(otp_code(self.app.seed, phone), code):
            token, cookie = self.login_ok(u)
            return self.send(200, {"token": token, "user_id": u["id"]}, headers=[("Set-Cookie", cookie)])
        return self.send(401, {"error": "invalid code"})

    def api_get(self, path, q):
        me = self.caller()
        self._user = me and me["username"]
        parts = path.rstrip("/").split("/")
        if path == "/api/me":
            if not me:
                return self.send(401, {"error": "authentication required"})
            return self.send(200, public(me))
        if len(parts) == 4 and parts[2] == "users":
            if not me:
                return self.send(401, {"error": "authentication required"})
            try:
                uid = int(parts[3])
            except ValueError:
                return self.send(400, {"error": "bad id"})
            if not 1 <= uid <= len(self.app.users):
                return self.send(404, {"error": "no such user"})
            if self.app.authz == "strict" and uid != me["id"] and me["username"] != "admin":
                return self.send(403, {"error": "forbidden"})
            return self.send(200, public(self.app.users[uid - 1]))
        if path == "/api/orders":
            if not me:
                return self.send(401, {"error": "authentication required"})
            page = max(1, int_arg(q, "page", 1))
            size = min(100, max(1, int_arg(q, "size", 10)))
            mine = self.app.orders[me["id"]]
            rows = mine[(page - 1) * size: page * size]
            return self.send(200, {"page": page, "size": size, "total": len(mine), "orders": rows})
        if path == "/api/export":
            if not me:
                return self.send(401, {"error": "authentication required"})
            start = max(1, int_arg(q, "from", 1))
            size = min(500, max(1, int_arg(q, "size", 50)))
            rows = [public(u) for u in self.app.users[start - 1: start - 1 + size]]
            return self.send(200, {"from": start, "count": len(rows), "records": rows})
        return self.send(404, {"error": "not found"})


def int_arg(q, name, default):
    try:
        return int((q.get(name) or [default])[0])
    except ValueError:
        return default


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--authz", choices=["none", "strict"], default="none",
                    help="strict: /api/users/<id> answers 403 for ids other than the caller's")
    ap.add_argument("--access-log", default="/dev/null")
    ap.add_argument("--ready", help="file written once the server listens")
    ap.add_argument("--dump-users", action="store_true", help="print the accounts as JSON and exit")
    args = ap.parse_args()
    app = App(args.seed, args.users, args.authz, args.access_log)
    if args.dump_users:
        json.dump(app.users, sys.stdout, ensure_ascii=False, indent=1)
        return
    Handler.app = app
    srv = Server((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    signal.signal(signal.SIGINT, lambda *_: threading.Thread(target=srv.shutdown).start())
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(f"{args.host}:{args.port}\n")
    srv.serve_forever(poll_interval=0.2)
    app.log.close()


if __name__ == "__main__":
    main()
