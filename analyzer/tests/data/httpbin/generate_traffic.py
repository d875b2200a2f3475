#!/usr/bin/env python3
"""Traffic generator for the inventory evaluation (issue 5, R-INV-1).

Reads httpbin's own OpenAPI document (`/spec.json`, Swagger 2.0) from the server and sends
requests covering every operation in it, with varied parameter values chosen from each
parameter's name and type: integers for `int` parameters, and for strings a mix of English
words, names, opaque tokens, base64 and hex, so that the analyzer sees the kinds of values
real APIs carry. Also varies query strings, headers (auth schemes, API keys, cookies) and
bodies (JSON, form, multipart) on the operations that take them.

Redirects are never followed, so every request path is one the spec documents. Standard
library only; deterministic for a given --seed.

    python3 generate_traffic.py http://10.213.0.1:8080 [--seed 5] [--static-repeats 8]
        [--templated-repeats 24]
"""

import argparse
import base64
import http.client
import json
import random
import string
import sys
import urllib.parse

WORDS = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "oscar", "peggy", "trent", "victor", "walter", "apple", "banana", "cherry",
    "orange", "river", "mountain", "summer", "winter", "report", "invoice", "account",
    "payment", "savings", "checking", "london", "paris", "tokyo", "berlin", "green", "blue",
    "session", "profile", "settings", "history", "mobile", "desktop",
]
METHODS = ["get", "post", "put", "patch", "delete", "trace"]


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.counter = 0

    def word(self):
        return self.rng.choice(WORDS)

    def token(self, n=None):
        n = n or self.rng.randint(8, 16)
        alphabet = string.ascii_letters + string.digits
        while True:
            t = "".join(self.rng.choice(alphabet) for _ in range(n))
            if any(c.isdigit() for c in t) and any(c.isalpha() for c in t):
                return t

    def hexstr(self, n=16):
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def string_value(self, name):
        """A varied value for a string path parameter."""
        r = self.rng.random()
        if name == "qop":
            return self.rng.choice(["auth", "auth-int", self.word(), self.token(8)])
        if name == "algorithm":
            return self.rng.choice(["MD5", "SHA-256", "SHA-512", self.token(6)])
        if name == "stale_after":
            return self.rng.choice(["never", str(self.rng.randint(1, 9999))])
        if name == "value" or name == "base64":
            raw = " ".join(self.word() for _ in range(self.rng.randint(1, 4)))
            return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=") or "YQ"
        if name == "etag":
            return self.hexstr(self.rng.choice([8, 16, 32])) if r < 0.5 else self.token()
        if r < 0.45:
            # Words repeat across requests, like popular user names do.
            return self.word() + ("" if self.rng.random() < 0.7 else str(self.rng.randint(1, 99)))
        if r < 0.8:
            return self.token()
        if r < 0.9:
            return str(self.rng.randint(1, 10**6))
        return self.hexstr(self.rng.choice([12, 24, 32]))

    def int_value(self, name):
        if name == "delay":
            return str(self.rng.randint(0, 2))
        if name == "codes":
            return str(self.rng.choice([200, 201, 202, 204, 400, 401, 403, 404, 409, 418, 500, 503]))
        if name in ("n",):
            return str(self.rng.randint(1, 40))
        if name == "offset":
            return str(self.rng.randint(0, 20))
        if name in ("numbytes",):
            return str(self.rng.randint(1, 512))
        if name == "value":
            return str(self.rng.randint(0, 3600))
        return str(self.rng.randint(0, 1000))

    def jwt(self):
        def part(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
        return "%s.%s.%s" % (
            part({"alg": "HS256", "typ": "JWT"}),
            part({"sub": self.token(6), "iat": self.rng.randint(10**9, 2 * 10**9)}),
            base64.urlsafe_b64encode(self.token(32).encode()).decode().rstrip("="),
        )

    def headers(self):
        h = {
            "User-Agent": self.rng.choice(
                ["python-requests/2.31", "curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)",
                 "okhttp/4.12.0"]),
            "Accept": self.rng.choice(["application/json", "*/*", "text/html"]),
        }
        r = self.rng.random()
        if r < 0.2:
            h["Authorization"] = "Bearer " + self.jwt()
        elif r < 0.3:
            h["X-API-Key"] = self.token(24)
        elif r < 0.4:
            h["Cookie"] = "session=%s; theme=%s" % (self.token(20), self.word())
        if self.rng.random() < 0.3:
            h["X-Request-Id"] = self.hexstr(32)
        return h

    def body(self):
        kind = self.rng.random()
        if kind < 0.6:
            obj = {"id": self.rng.randint(1, 10**6), "name": self.word(),
                   "amount": round(self.rng.random() * 1000, 2),
                   "tags": [self.word() for _ in range(self.rng.randint(0, 3))],
                   "address": {"city": self.word(), "zip": str(self.rng.randint(10000, 99999))}}
            if self.rng.random() < 0.5:
                obj["active"] = self.rng.random() < 0.5
            return "application/json", json.dumps(obj).encode()
        if kind < 0.85:
            form = {"user": self.word(), "count": str(self.rng.randint(1, 50))}
            return "application/x-www-form-urlencoded", urllib.parse.urlencode(form).encode()
        boundary = "----apitap" + self.hexstr(12)
        parts = [
            "--%s\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n%s\r\n" % (boundary, self.word()),
            "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\n%s\r\n" % (boundary, self.token(30)),
            "--%s--\r\n" % boundary,
        ]
        return "multipart/form-data; boundary=" + boundary, "".join(parts).encode()


def build_requests(spec, gen, static_repeats, templated_repeats):
    """(method, path, query, headers, body) tuples covering every operation in the spec."""
    out = []
    for path, item in sorted(spec["paths"].items()):
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = op.get("parameters", [])
            templated = "{" in path
            repeats = templated_repeats if templated else static_repeats
            if path.startswith("/image") or path in ("/brotli", "/deflate", "/gzip"):
                repeats = max(3, static_repeats // 2)
            if path.startswith("/delay"):
                repeats = max(3, templated_repeats // 6)
            for _ in range(repeats):
                types = {p["name"]: p.get("type") for p in params if p.get("in") == "path"}
                concrete = path
                for name in [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]:
                    t = types.get(name)
                    if t in ("int", "integer") or name == "codes":
                        v = gen.int_value(name)
                    else:
                        v = gen.string_value(name)
                    concrete = concrete.replace("{%s}" % name, urllib.parse.quote(v, safe=""), 1)
                query = {}
                headers = gen.headers()
                body = None
                if path == "/drip":
                    query = {"duration": "0", "numbytes": str(gen.rng.randint(1, 20)),
                             "code": "200", "delay": "0"}
                elif path == "/redirect-to":
                    query = {"url": gen.rng.choice(["/get", "/anything/" + gen.word(),
                                                    "http://example.com/"]),
                             "status_code": str(gen.rng.choice([302, 303, 307]))}
                elif path in ("/cookies/set", "/cookies/delete", "/response-headers"):
                    query = {gen.word(): gen.token(6) for _ in range(gen.rng.randint(1, 3))}
                elif path == "/bearer":
                    if gen.rng.random() < 0.8:
                        headers["Authorization"] = "Bearer " + gen.jwt()
                    else:
                        headers.pop("Authorization", None)
                elif path.startswith("/basic-auth") or path.startswith("/hidden-basic-auth"):
                    parts = urllib.parse.unquote(concrete).split("/")
                    user, passwd = parts[-2], parts[-1]
                    if gen.rng.random() < 0.6:
                        cred = "%s:%s" % (user, passwd)
                    else:
                        cred = "%s:%s" % (user, gen.token(6))
                    headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
                elif path == "/etag/{etag}" and gen.rng.random() < 0.3:
                    headers["If-None-Match"] = '"%s"' % gen.token(8)
                elif path == "/cache" and gen.rng.random() < 0.3:
                    headers["If-Modified-Since"] = "Sat, 01 Jan 2022 00:00:00 GMT"
                elif path.startswith("/anything") or path in ("/get", "/delete"):
                    if gen.rng.random() < 0.5:
                        query = {"page": str(gen.rng.randint(1, 9)),
                                 "q": gen.word()}
                if method in ("post", "put", "patch") or (method == "delete" and gen.rng.random() < 0.3):
                    if method != "trace" and not path.startswith("/status") and not path.startswith("/delay"):
                        body = gen.body()
                out.append((method.upper(), concrete, query, headers, body))
    gen.rng.shuffle(out)
    return out


def send(host, port, requests, per_connection):
    """Sends the requests over keep-alive connections of a few requests each."""
    statuses = {}
    conn = None
    sent_on_conn = 0
    for method, path, query, headers, body in requests:
        if conn is None or sent_on_conn >= per_connection:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
            sent_on_conn = 0
        target = path + ("?" + urllib.parse.urlencode(query) if query else "")
        hdrs = dict(headers)
        data = None
        if body is not None:
            hdrs["Content-Type"] = body[0]
            data = body[1]
        try:
            conn.request(method, target, body=data, headers=hdrs)
            resp = conn.getresponse()
            resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            sent_on_conn += 1
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            print("request failed: %s %s: %s" % (method, path, e), file=sys.stderr)
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    return statuses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--static-repeats", type=int, default=8)
    ap.add_argument("--templated-repeats", type=int, default=24)
    ap.add_argument("--per-connection", type=int, default=5)
    ap.add_argument("--spec", help="read the spec from this file instead of fetching /spec.json")
    args = ap.parse_args()
    url = urllib.parse.urlsplit(args.base_url)
    if args.spec:
        with open(args.spec, "rb") as f:
            spec = json.load(f)
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
        conn.request("GET", "/spec.json")
        spec = json.loads(conn.getresponse().read())
        conn.close()
    gen = Gen(args.seed)
    reqs = build_requests(spec, gen, args.static_repeats, args.templated_repeats)
    statuses = send(url.hostname, url.port or 80, reqs, args.per_connection)
    ops = sum(1 for item in spec["paths"].values() for m in METHODS if m in item)
    print(json.dumps({"requests": len(reqs), "operations": ops, "statuses": statuses}))


if __name__ == "__main__":
    main()
