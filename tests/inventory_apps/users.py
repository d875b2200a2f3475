#!/usr/bin/env python3
"""Scripted users of the inventory evaluation apps: realistic sessions that use every
operation of the app's truth spec with real identifiers (bounded: a fixed number of sessions,
each a fixed list of requests, each with a 5 s timeout).

    users.py APP BASE_URL DATA_DIR [--sessions N] [--seed S]
"""
import json
import random
import sys
import urllib.error
import urllib.parse
import urllib.request

UAS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "python-requests/2.32.3",
]


class Client:
    def __init__(self, base, rng):
        self.base = base.rstrip("/")
        self.ua = rng.choice(UAS)

    def call(self, method, path, body=None, headers=None):
        data = None
        h = {"User-Agent": self.ua, "Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, None


def jsonserver(c, rng, ids):
    users = ids["users"]
    st, listed = c.call("GET", "/users")
    c.call("GET", "/users?_page=%d" % rng.randrange(1, 4))
    c.call("GET", "/db")
    for u in rng.sample(users, 4):
        c.call("GET", "/users/" + urllib.parse.quote(u))
        c.call("GET", "/users/%s/posts" % urllib.parse.quote(u))
    u = rng.choice(users)
    c.call("PATCH", "/users/" + urllib.parse.quote(u), {"city": "Springfield"})
    st, one = c.call("GET", "/users/" + urllib.parse.quote(u))
    if isinstance(one, dict):
        one["city"] = "Shelbyville"
        c.call("PUT", "/users/" + urllib.parse.quote(u), one)
    new = "guest.%s%d" % (rng.choice(["anna", "li", "mark", "wei"]), rng.randrange(10000))
    c.call("POST", "/users", {"id": new, "name": "Guest", "email": new + "@example.net"})
    c.call("GET", "/users/" + new)
    c.call("POST", "/users/%s/posts" % new, {"title": "hello", "body": "first post"})
    c.call("DELETE", "/users/" + new)
    c.call("GET", "/posts")
    for pid in rng.sample(range(1, 61), 3):
        c.call("GET", "/posts/%d" % pid)
        c.call("GET", "/posts/%d/comments" % pid)
    st, p = c.call("POST", "/posts", {"userId": u, "title": "t", "body": "b"})
    pid = p.get("id") if isinstance(p, dict) else None
    if pid is not None:
        c.call("PATCH", "/posts/%s" % pid, {"title": "t2"})
        c.call("PUT", "/posts/%s" % pid, {"userId": u, "title": "t3", "body": "b3"})
        st, cm = c.call("POST", "/posts/%s/comments" % pid, {"email": "a@example.com", "body": "nice"})
        c.call("GET", "/comments")
        cid = cm.get("id") if isinstance(cm, dict) else None
        if cid is not None:
            c.call("GET", "/comments/%s" % cid)
            c.call("PATCH", "/comments/%s" % cid, {"body": "nicer"})
            c.call("PUT", "/comments/%s" % cid, {"postId": pid, "email": "b@example.com", "body": "x"})
            c.call("DELETE", "/comments/%s" % cid)
        c.call("POST", "/comments", {"postId": pid, "email": "c@example.com", "body": "y"})
        c.call("DELETE", "/posts/%s" % pid)


def tilde(s):
    """Datasette's tilde encoding of a primary key in a row URL."""
    out = []
    for ch in s:
        if ch.isalnum() or ch in "_-":
            out.append(ch)
        else:
            out.append("~%02X" % ord(ch))
    return "".join(out)


def datasette(c, rng, ids):
    handles = ids["customers"]
    c.call("GET", "/shop.json")
    c.call("GET", "/shop/customers.json?_size=%d" % rng.choice([10, 20, 50]))
    c.call("GET", "/shop/customers.json?city__contains=%s" % urllib.parse.quote(rng.choice(["市", "州", "京"])))
    for h in rng.sample(handles, 4):
        c.call("GET", "/shop/customers/%s.json" % tilde(h))
    c.call("GET", "/shop/orders.json?_sort_desc=amount")
    for oid in rng.sample(range(1, 81), 3):
        c.call("GET", "/shop/orders/%d.json" % oid)
    h = rng.choice(handles)
    c.call("GET", "/shop/orders.json?customer=%s" % urllib.parse.quote(h))
    q = "select handle, city from customers where city like :c limit 5"
    c.call("GET", "/shop.json?" + urllib.parse.urlencode({"sql": q, "c": "%州%"}))
    # GraphQL (datasette-graphql): named operations, as front ends send them.
    c.call(
        "POST",
        "/graphql",
        {
            "operationName": "CustomerList",
            "query": "query CustomerList($n: Int) { customers(first: $n) { nodes { handle full_name email mobile id_card } } }",
            "variables": {"n": rng.choice([3, 5, 10])},
        },
    )
    c.call(
        "POST",
        "/graphql",
        {
            "operationName": "CustomerByHandle",
            "query": "query CustomerByHandle($h: String) { customers_row(handle: $h) { handle full_name bank_card city } }",
            "variables": {"h": h},
        },
    )
    c.call(
        "POST",
        "/graphql",
        {
            "operationName": "RecentOrders",
            "query": "query RecentOrders { orders(first: 5, sort_desc: amount) { nodes { id item amount customer { handle } } } }",
        },
    )


def main():
    app, base, data_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    sessions = int(sys.argv[sys.argv.index("--sessions") + 1]) if "--sessions" in sys.argv else 20
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 3
    rng = random.Random(seed)
    ids = json.load(open(data_dir + "/ids.json"))
    fn = {"jsonserver": jsonserver, "datasette": datasette}[app]
    for _ in range(min(sessions, 200)):
        fn(Client(base, rng), rng, ids)


if __name__ == "__main__":
    main()
