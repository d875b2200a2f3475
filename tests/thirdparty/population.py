#!/usr/bin/env python3
"""Benign population for the third-party application lab (stdlib only).

Each source address is one person with a browser: sessions with think times, a browser
User-Agent, Referer, cookies, the page's CSS/JS/images fetched once per session and
revalidated (If-Modified-Since / If-None-Match) in later sessions, logins that succeed
(a few users mistype their password once first), and one monitoring poller polling a JSON
URL twice a second for the whole run. Nothing here is an attack: no user sends more than a
handful of login attempts, and all of them belong to the user's own account.

    python3 population.py --app django --base http://10.213.0.1:8000 \
        --sources 10.213.100.10,... --poller 10.213.99.5 --accounts accounts.json \
        --duration 300 --seed 1

Stops at --duration or on SIGTERM (every user finishes the request in flight).
"""
import argparse
import base64
import email.utils
import http.client
import json
import random
import re
import signal
import sys
import threading
import time
import urllib.parse

STOP = threading.Event()
STARTED = time.time()
IDLE_S = 3.0
# The monitoring poller's own account (FAB's API needs a login); benign users start at 3.
POLL_ACCOUNT = 59

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.81",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S9180) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0.5359.95 Safari/537.36 QIHU 360SE",
]

ASSET_RE = re.compile(
    r"""<(?:link[^>]+rel=["']?(?:stylesheet|icon|shortcut icon)["']?[^>]*href|script[^>]+src|img[^>]+src)=["']([^"']+)["']""",
    re.I,
)
VERSIONED = re.compile(r"\d+\.\d+\.\d+|[?&][^=]*=?[0-9a-f]{6,}$|\?[0-9a-f]{6}$")
ASSET_RE2 = re.compile(
    r"""<link[^>]+href=["']([^"']+)["'][^>]*rel=["']?stylesheet""", re.I
)


def log(msg):
    print(f"{time.time():.3f} {msg}", flush=True)


class Browser:
    """One person's browser: a keep-alive connection from its own address, cookies,
    a validator cache for static assets."""

    def __init__(self, base, source, ua, rng):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.source = source
        self.ua = ua
        self.rng = rng
        self.cookies = {}
        self.cache = {}  # path -> (last-modified, etag)
        self.session_assets = set()
        self.warm = True
        self.last_used = 0.0
        self.conn = None
        self.referer = None
        self.requests = 0

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=15,
                                               source_address=(self.source, 0))

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None, accept="text/html", referer=True,
                follow=True):
        """Returns (status, headers dict (lower-case), body bytes) of the final response."""
        for _ in range(5):
            status, hdrs, data = self._one(method, path, body, headers or {}, accept, referer)
            loc = hdrs.get("location")
            if follow and status in (301, 302, 303, 307) and loc:
                u = urllib.parse.urlsplit(loc)
                path = u.path + ("?" + u.query if u.query else "")
                if status != 307:
                    method, body = "GET", None
                    headers = {}
                continue
            return status, hdrs, data
        return status, hdrs, data

    def _one(self, method, path, body, headers, accept, referer):
        h = {
            "Host": f"{self.host}:{self.port}",
            "User-Agent": self.ua,
            "Accept": accept,
            "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.6",
            "Accept-Encoding": "gzip, deflate",
        }
        if referer and self.referer:
            h["Referer"] = self.referer
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if isinstance(body, dict):
            body = urllib.parse.urlencode(body)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        h.update(headers)
        if isinstance(body, str):
            body = body.encode()
        # Like a browser, do not reuse a connection idle for longer than servers keep it
        # (uvicorn closes after 5 s: a request racing that close would be reset).
        if self.conn is not None and time.time() - self.last_used > IDLE_S:
            self.close()
        for attempt in range(2):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.close()
                if attempt == 1:
                    raise
        self.requests += 1
        self.last_used = time.time()
        hdrs = {}
        for k, v in resp.getheaders():
            k = k.lower()
            if k == "set-cookie":
                name, _, rest = v.partition("=")
                value = rest.split(";", 1)[0]
                if "max-age=0" in v.lower() or value in ('""', ""):
                    self.cookies.pop(name.strip(), None)
                else:
                    self.cookies[name.strip()] = value
            hdrs[k] = v
        if resp.will_close:
            self.close()
        return resp.status, hdrs, data

    def page(self, path, method="GET", body=None, headers=None):
        """A page view: the document, then its assets, then think time."""
        status, hdrs, data = self.request(method, path, body, headers,
                                          accept="text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
        page_url = f"http://{self.host}:{self.port}{path}"
        if "html" in hdrs.get("content-type", ""):
            text = data.decode("utf-8", "replace")
            seen = []
            for m in list(ASSET_RE.finditer(text)) + list(ASSET_RE2.finditer(text)):
                u = urllib.parse.urlsplit(urllib.parse.urljoin(path, m.group(1).replace("&amp;", "&")))
                if u.netloc and u.netloc != f"{self.host}:{self.port}":
                    continue  # third-party CDN (not reachable in the lab)
                p = u.path + ("?" + u.query if u.query else "")
                if p not in seen and not p.startswith("#"):
                    seen.append(p)
            self.referer = page_url
            for p in seen[:30]:
                self.asset(p)
        self.referer = page_url
        return status, hdrs, data

    def asset(self, path):
        # Heuristic freshness: within one session an asset is fetched or revalidated once.
        if self.cache.get(path) == "fresh" or path in self.session_assets:
            return
        if self.warm and path not in self.cache and VERSIONED.search(path):
            # A returning visitor has versioned assets (a version or hash in the URL) in its
            # cache from an earlier visit and does not ask for them again.
            return
        self.session_assets.add(path)
        h = {}
        lm, etag = self.cache.get(path, (None, None))
        if lm is None and etag is None and self.warm:
            # A returning visitor: the asset is in the browser's cache from an earlier visit.
            lm = email.utils.formatdate(STARTED, usegmt=True)
        if lm:
            h["If-Modified-Since"] = lm
        if etag:
            h["If-None-Match"] = etag
        accept = "text/css,*/*;q=0.1" if path.split("?")[0].endswith(".css") else "*/*"
        if path.split("?")[0].endswith((".png", ".ico", ".jpg", ".gif", ".svg")):
            accept = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
        status, hdrs, _ = self.request("GET", path, headers=h, accept=accept)
        if status in (200, 304):
            lm = hdrs.get("last-modified", lm) if status == 200 else lm
            etag = hdrs.get("etag", etag)
            if "max-age" in hdrs.get("cache-control", "") and "max-age=0" not in hdrs.get("cache-control", ""):
                self.cache[path] = "fresh"
            elif lm or etag:
                self.cache[path] = (lm, etag)

    def xhr(self, method, path, payload=None, headers=None):
        h = {"X-Requested-With": "XMLHttpRequest"}
        h.update(headers or {})
        body = None
        if payload is not None:
            body = json.dumps(payload)
            h["Content-Type"] = "application/json"
        status, hdrs, data = self.request(method, path, body, h, accept="application/json, text/plain, */*",
                                          follow=False)
        try:
            return status, json.loads(data or b"null")
        except ValueError:
            return status, None

    def think(self, lo=4.0, hi=20.0):
        STOP.wait(self.rng.uniform(lo, hi))


def csrf_of(html):
    m = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    return m.group(1).decode() if m else ""


def typo(pw, rng):
    i = rng.randrange(len(pw))
    return pw[:i] + pw[i + 1:] if len(pw) > 6 else pw + "1"


# ---- per application sessions ------------------------------------------------------------

def basic_path(user):
    """httpbin's /basic-auth/{user}/{passwd}, percent-encoded like a browser would."""
    q = urllib.parse.quote
    return f"/basic-auth/{q(user['username'], safe='')}/{q(user['password'], safe='')}"


def httpbin_session(b, user, st):
    b.page("/")
    b.think()
    if st["mistype"]:
        st["mistype"] = False
        auth = base64.b64encode(f"{user['username']}:{typo(user['password'], b.rng)}".encode()).decode()
        b.request("GET", basic_path(user), headers={"Authorization": "Basic " + auth},
                  accept="application/json")
        b.think(2, 6)
    auth = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
    b.request("GET", basic_path(user), headers={"Authorization": "Basic " + auth},
              accept="application/json")
    b.think()
    for _ in range(b.rng.randint(2, 6)):
        if STOP.is_set():
            return
        pick = b.rng.random()
        if pick < 0.2:
            b.page("/html")
        elif pick < 0.35:
            b.page(f"/links/10/{b.rng.randint(0, 9)}")
        elif pick < 0.5:
            b.page("/forms/post")
            b.think(5, 15)
            b.page("/post", "POST", {"custname": user["name"], "custtel": user["phone"],
                                     "custemail": user["email"], "size": b.rng.choice(["small", "medium", "large"]),
                                     "topping": "cheese", "delivery": "18:30", "comments": "请放在门口"})
        elif pick < 0.6:
            b.xhr("GET", f"/get?page={b.rng.randint(1, 5)}&q={urllib.parse.quote(user['name'])}")
        elif pick < 0.7:
            b.xhr("GET", "/json")
        elif pick < 0.78:
            b.request("GET", "/image/png", accept="image/avif,image/webp,image/*,*/*;q=0.8")
        elif pick < 0.86:
            b.xhr("GET", "/uuid")
        elif pick < 0.93:
            b.xhr("GET", "/headers")
        else:
            b.xhr("POST", "/anything/orders", {"item": "保温杯", "qty": b.rng.randint(1, 3)})
        b.think()


def django_session(b, user, st):
    status, _, html = b.page("/admin/")  # redirects to the login form
    b.think(3, 9)
    tries = [typo(user["password"], b.rng)] if st["mistype"] else []
    st["mistype"] = False
    tries.append(user["password"])
    for pw in tries:
        token = csrf_of(html)
        status, _, html = b.page("/admin/login/?next=/admin/", "POST",
                                 {"csrfmiddlewaretoken": token, "username": user["username"],
                                  "password": pw, "next": "/admin/"})
        b.think(2, 6)
    for _ in range(b.rng.randint(2, 7)):
        if STOP.is_set():
            break
        pick = b.rng.random()
        if pick < 0.35:
            b.page(f"/admin/people/person/?p={b.rng.randint(1, 30)}")
        elif pick < 0.55:
            b.page(f"/admin/people/person/?q={urllib.parse.quote(b.rng.choice(['王', '李', '张', '刘', '陈']))}")
        elif pick < 0.9:
            b.page(f"/admin/people/person/{b.rng.randint(1, 1500)}/change/")
        else:
            b.page("/admin/")
        b.think()
    _, _, html = b.page("/admin/")
    token = b.cookies.get("csrftoken", "")
    b.page("/admin/logout/", "POST", {"csrfmiddlewaretoken": csrf_of(html) or token})


def fab_session(b, user, st):
    if st["api"]:
        return fab_api_session(b, user, st)
    b.page("/")
    b.think(2, 6)
    b.page("/login/")
    b.think(3, 9)
    tries = [typo(user["password"], b.rng)] if st["mistype"] else []
    st["mistype"] = False
    tries.append(user["password"])
    for pw in tries:
        b.page("/login/", "POST", {"username": user["username"], "password": pw})
        b.think(2, 6)
    for _ in range(b.rng.randint(2, 7)):
        if STOP.is_set():
            break
        pick = b.rng.random()
        if pick < 0.4:
            b.page(f"/contactmodelview/list/?page_ContactModelView={b.rng.randint(0, 40)}")
        elif pick < 0.85:
            b.page(f"/contactmodelview/show/{b.rng.randint(1, 1500)}")
        else:
            b.page(f"/contactmodelview/list/?_flt_0_name={urllib.parse.quote(b.rng.choice(['王', '李', '张']))}")
        b.think()
    b.page("/logout/")


def fab_api_session(b, user, st):
    tries = [typo(user["password"], b.rng)] if st["mistype"] else []
    st["mistype"] = False
    tries.append(user["password"])
    token = None
    for pw in tries:
        status, doc = b.xhr("POST", "/api/v1/security/login",
                            {"username": user["username"], "password": pw, "provider": "db", "refresh": True})
        if status == 200 and doc:
            token = doc.get("access_token")
        b.think(2, 5)
    if not token:
        return
    auth = {"Authorization": "Bearer " + token}
    b.xhr("GET", "/api/v1/contact/_info", headers=auth)
    for _ in range(b.rng.randint(2, 6)):
        if STOP.is_set():
            break
        if b.rng.random() < 0.4:
            b.xhr("GET", f"/api/v1/contact/?q=(page:{b.rng.randint(0, 20)},page_size:25)", headers=auth)
        else:
            b.xhr("GET", f"/api/v1/contact/{b.rng.randint(1, 1500)}", headers=auth)
        b.think(2, 10)


def datasette_session(b, user, st):
    b.page("/")
    b.think(2, 6)
    b.page("/shop")
    b.think(2, 6)
    status, hdrs, html = b.page("/shop/customers")
    for _ in range(b.rng.randint(2, 7)):
        if STOP.is_set():
            break
        pick = b.rng.random()
        if pick < 0.25:
            m = re.search(rb'href="(/shop/customers\?_next=[^"]+)"', html)
            if m:
                _, _, html = b.page(m.group(1).decode().replace("&amp;", "&"))
        elif pick < 0.55:
            cid = b.rng.randint(1, 2000)
            b.page(f"/shop/customers/{cid}")
            b.think(2, 6)
            b.page(f"/shop/orders?customer_id={cid}")
        elif pick < 0.7:
            b.page(f"/shop/customers?city={urllib.parse.quote(b.rng.choice(['北京市', '上海市', '杭州市', '广州市']))}")
        elif pick < 0.85:
            b.xhr("GET", f"/shop/orders.json?customer_id={b.rng.randint(1, 2000)}&_shape=array")
        else:
            b.page(f"/shop/orders?_sort_desc=amount_cny&product={urllib.parse.quote(b.rng.choice(['保温杯', '雨伞', '台灯']))}")
        b.think()


def deluge_session(b, user, st):
    # deluge-web is a single-page app that stays open: most people's tab was already open
    # before the capture (their sessions are JSON-RPC only); a few (re)load the page and its
    # ~2 MB of scripts, which deluge-web serves without validators (no revalidation).
    if st.get("loads_page"):
        b.page("/")
        st["loads_page"] = False
    rid = [0]

    def rpc(method, params):
        rid[0] += 1
        return b.xhr("POST", "/json", {"method": method, "params": params, "id": rid[0]})

    rpc("auth.check_session", [])
    b.think(3, 8)
    if st["mistype"]:
        st["mistype"] = False
        rpc("auth.login", [typo(st["web_password"], b.rng)])
        b.think(2, 5)
    rpc("auth.login", [st["web_password"]])
    rpc("web.connected", [])
    rpc("web.get_hosts", [])
    rpc("web.get_config", [])
    for _ in range(b.rng.randint(4, 12)):
        if STOP.is_set():
            break
        rpc("web.update_ui", [["name", "state", "progress"], {}])
        STOP.wait(b.rng.uniform(1.5, 3.5))
    rpc("auth.delete_session", [])


SESSIONS = {
    "httpbin": httpbin_session,
    "django": django_session,
    "fab": fab_session,
    "datasette": datasette_session,
    "deluge": deluge_session,
}


def person(app, base, source, user, seed, ramp, t_end, extra):
    rng = random.Random(seed)
    ua = USER_AGENTS[seed % len(USER_AGENTS)]
    b = Browser(base, source, ua, rng)
    # Everybody but one person has visited before (cached CSS/JS/images are revalidated with
    # If-Modified-Since); the newcomer downloads them once.
    b.warm = seed % 1000 != 5
    st = {"mistype": seed % 7 == 3, "api": app == "fab" and seed % 3 == 0,
          "loads_page": seed % 1000 in (5, 17)}
    st.update(extra)
    # Arrivals are spread over the first minute, then sessions follow each other with gaps.
    STOP.wait(rng.uniform(0, ramp))
    sessions = 0
    while not STOP.is_set() and time.time() < t_end - 10 and sessions < 50:
        try:
            SESSIONS[app](b, user, st)
        except (OSError, http.client.HTTPException) as e:
            log(f"{source}: {e!r}")
        sessions += 1
        b.close()
        b.cookies.clear()
        b.session_assets.clear()
        b.referer = None
        STOP.wait(rng.uniform(30, 120))
    log(f"{source}: {sessions} sessions, {b.requests} requests")


def poller(app, base, source, t_end, extra):
    """Monitoring: one JSON URL twice a second (bounded by the duration)."""
    b = Browser(base, source, "Prometheus/2.45.0 blackbox-exporter", random.Random(0))
    headers, method, body, path = {}, "GET", None, extra["poll_path"]
    if app == "fab":
        _, doc = b.xhr("POST", "/api/v1/security/login",
                       {"username": extra["poll_user"], "password": extra["poll_password"], "provider": "db"})
        headers = {"Authorization": "Bearer " + (doc or {}).get("access_token", "")}
    if app == "deluge":
        b.xhr("POST", "/json", {"method": "auth.login", "params": [extra["web_password"]], "id": 1})
        method, body = "POST", {"method": "web.connected", "params": [], "id": 2}
    n = 0
    nxt = time.time()
    while not STOP.is_set() and time.time() < t_end and n < 20000:
        try:
            b.xhr(method, path, body, headers)
        except (OSError, http.client.HTTPException) as e:
            log(f"poller: {e!r}")
        n += 1
        nxt += 0.5
        STOP.wait(max(0.0, nxt - time.time()))
    log(f"poller: {n} polls")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True, choices=sorted(SESSIONS))
    ap.add_argument("--base", required=True)
    ap.add_argument("--sources", required=True)
    ap.add_argument("--poller", default="")
    ap.add_argument("--poll-path", default="")
    ap.add_argument("--accounts", required=True)
    ap.add_argument("--first-account", type=int, default=3)
    ap.add_argument("--web-password", default="")
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--ramp", type=float, default=60, help="arrivals spread over this many seconds")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    signal.signal(signal.SIGINT, lambda *_: STOP.set())
    with open(a.accounts, encoding="utf-8") as f:
        accounts = json.load(f)
    t_end = time.time() + a.duration
    extra = {"web_password": a.web_password, "poll_path": a.poll_path,
             "poll_user": accounts[POLL_ACCOUNT - 1]["username"],
             "poll_password": accounts[POLL_ACCOUNT - 1]["password"]}
    threads = []
    for i, src in enumerate(s for s in a.sources.split(",") if s):
        user = accounts[a.first_account - 1 + i]
        t = threading.Thread(target=person,
                             args=(a.app, a.base, src, user, a.seed * 1000 + i, a.ramp, t_end, extra),
                             daemon=True)
        t.start()
        threads.append(t)
    if a.poller:
        t = threading.Thread(target=poller, args=(a.app, a.base, a.poller, t_end, extra), daemon=True)
        t.start()
        threads.append(t)
    deadline = t_end + 60
    for t in threads:
        t.join(max(0.0, deadline - time.time()))
    log("population done")


if __name__ == "__main__":
    sys.exit(main())
