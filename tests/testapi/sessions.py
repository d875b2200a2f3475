#!/usr/bin/env python3
"""Scripted normal user sessions against server.py: the benign traffic of issue 7's evaluation.

Each source address is one or two real users of the server (same --seed) who, with human
think times, open the site, log in (JSON or OTP; now and then mistyping the password once),
look at their own profile and a page or two of their orders, sometimes export a handful of
their records, and log out. A browser-like client: keep-alive within a session, Referer,
a browser User-Agent.

Bounded: stops after --duration seconds or --max-requests requests in total, whichever comes
first. Prints one JSON summary line on exit.
"""

import argparse
import http.client
import json
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402  (same directory: accounts and OTP codes)

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47",
    "Mozilla/5.0 (Linux; Android 14; V2309A) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
]


class Budget:
    def __init__(self, max_requests, deadline):
        self.stop = threading.Event()
        self.left = max_requests
        self.deadline = deadline
        self.lock = threading.Lock()
        self.sent = 0
        self.errors = 0

    def take(self):
        with self.lock:
            if self.left <= 0 or time.time() >= self.deadline or self.stop.is_set():
                return False
            self.left -= 1
            self.sent += 1
            return True


class Session:
    def __init__(self, host, port, source, agent, budget):
        self.host, self.port, self.source = host, port, source
        self.agent = agent
        self.budget = budget
        self.conn = None
        self.cookie = None
        self.token = None
        self.referer = None

    def request(self, method, path, body=None, json_body=True):
        if not self.budget.take():
            raise TimeoutError("budget exhausted")
        headers = {
            "User-Agent": self.agent,
            "Accept": "application/json, text/plain, */*" if path.startswith("/api/") else "text/html,*/*;q=0.8",
            "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.6",
        }
        if self.referer:
            headers["Referer"] = self.referer
        if self.token and path.startswith("/api/"):
            headers["Authorization"] = "Bearer " + self.token
        if self.cookie:
            headers["Cookie"] = "session=" + self.cookie
        data = None
        if body is not None:
            data = json.dumps(body).encode() if json_body else body.encode()
            headers["Content-Type"] = "application/json" if json_body else "application/x-www-form-urlencoded"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10,
                                                       source_address=(self.source, 0))
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                break
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    self.budget.errors += 1
                    return 0, {}
        if not path.startswith("/api/"):
            self.referer = f"http://{self.host}:{self.port}{path}"
        for k, v in resp.getheaders():
            if k.lower() == "set-cookie" and v.startswith("session="):
                self.cookie = v.split(";")[0][8:] or None
        try:
            obj = json.loads(payload) if payload and path.startswith("/api/") else {}
        except ValueError:
            obj = {}
        return resp.status, obj

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def user_loop(args, source, users, budget, rng, seed):
    """One address: sessions of its users separated by think times until the budget ends."""
    agent = rng.choice(AGENTS)
    while time.time() < budget.deadline:
        u = rng.choice(users)
        s = Session(args.host, args.port, source, agent, budget)
        try:
            one_session(s, u, rng, seed, args.think)
        except TimeoutError:
            s.close()
            return
        s.close()
        pause = rng.uniform(args.gap * 0.5, args.gap * 1.5)
        if time.time() + pause >= budget.deadline:
            return
        if budget.stop.wait(pause):
            return


def think(rng, scale):
    time.sleep(rng.uniform(0.3, 1.0) * scale)


def one_session(s, u, rng, seed, scale):
    if rng.random() < 0.7:
        s.request("GET", "/")
        think(rng, scale)
        if rng.random() < 0.4:
            s.request("GET", f"/products/{rng.randrange(1, server.N_PRODUCTS + 1)}.html")
            think(rng, scale)
    if rng.random() < 0.15:
        s.request("POST", "/api/otp/send", {"phone": u["phone"]})
        think(rng, scale * 3)
        status, obj = s.request("POST", "/api/otp/verify",
                                {"phone": u["phone"], "code": server.otp_code(seed, u["phone"])})
    else:
        if rng.random() < 0.05:  # a typo, then the right password
            s.request("POST", "/api/login", {"username": u["username"], "password": u["password"] + "1"})
            think(rng, scale)
        status, obj = s.request("POST", "/api/login", {"username": u["username"], "password": u["password"]})
    if status != 200:
        return
    s.token = obj.get("token")
    think(rng, scale)
    s.request("GET", "/api/me" if rng.random() < 0.5 else f"/api/users/{u['id']}")
    think(rng, scale)
    pages = 1 + (rng.random() < 0.4) + (rng.random() < 0.15)
    for p in range(1, pages + 1):
        s.request("GET", f"/api/orders?page={p}&size=10")
        think(rng, scale)
    if rng.random() < 0.1:
        s.request("GET", f"/api/export?from={u['id']}&size=1")
        think(rng, scale)
    s.request("POST", "/api/logout", {})
    s.token = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="10.213.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--seed", type=int, default=7, help="the server's seed (accounts)")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--sources", required=True, help="comma-separated client addresses")
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--max-requests", type=int, default=5000)
    ap.add_argument("--gap", type=float, default=20, help="mean seconds between sessions per address")
    ap.add_argument("--think", type=float, default=2.0, help="think-time scale in seconds")
    ap.add_argument("--rng", type=int, default=1, help="seed of the behaviour")
    args = ap.parse_args()
    accounts = server.build_users(args.seed, args.users)
    # Not the well-known accounts the attacks target.
    regular = accounts[10:]
    sources = [s for s in args.sources.split(",") if s]
    budget = Budget(args.max_requests, time.time() + args.duration)
    # SIGTERM/SIGINT: finish the request in flight, send no more, exit (a clean capture).
    signal.signal(signal.SIGTERM, lambda *_: budget.stop.set())
    signal.signal(signal.SIGINT, lambda *_: budget.stop.set())
    master = random.Random(args.rng)
    threads = []
    for i, src in enumerate(sources):
        rng = random.Random(master.randrange(1 << 30))
        mine = [regular[(i * 2) % len(regular)], regular[(i * 2 + 1) % len(regular)]]
        t = threading.Thread(target=lambda src=src, mine=mine, rng=rng: (
            budget.stop.wait(rng.uniform(0, min(args.gap, args.duration / 4))),
            user_loop(args, src, mine, budget, rng, args.seed)), daemon=True)
        t.start()
        threads.append(t)
    while any(t.is_alive() for t in threads) and time.time() < budget.deadline + 15:
        time.sleep(0.2)
    print(json.dumps({"requests": budget.sent, "errors": budget.errors}))


if __name__ == "__main__":
    main()
