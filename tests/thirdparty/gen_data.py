#!/usr/bin/env python3
"""Deterministic Faker (zh_CN) data for the third-party application lab.

Accounts (shared by every application that has logins) and personal records (names,
mobiles, PRC resident ID numbers, addresses). Nothing here is an application: the
per-application setup scripts load this data into Django's admin, Flask-AppBuilder and a
SQLite database for Datasette.

    python3 gen_data.py accounts --out accounts.json     # the account list the recorder reads
"""
import argparse
import json
import random

from faker import Faker

SEED = 14
ACCOUNTS = 420
# Accounts 1..59 belong to the benign population; attack word lists draw from 60 and up.
BENIGN_ACCOUNTS = 59
# The brute-force victim (account 2) has John's password-list entry with this index
# (0-based, comments skipped): the real password sits inside the attack's 230 passwords.
VICTIM_ID = 2
VICTIM_JOHN_INDEX = 170
# Accounts whose password is a common one; stuffing lists carry some of them (reuse).
REUSED = ["Aa123456", "woaini1314", "5201314", "qwe123", "1qaz2wsx", "Passw0rd"]


def john_entry(index):
    try:
        with open("/usr/share/john/password.lst", encoding="latin-1") as f:
            words = [l.rstrip("\n") for l in f if l.strip() and not l.startswith("#!comment")]
        return words[index]
    except OSError:
        return "dakota"


def accounts():
    fake = Faker("zh_CN")
    Faker.seed(SEED)
    rng = random.Random(SEED)
    seen = set()
    out = []
    while len(out) < ACCOUNTS:
        name = fake.name()
        user = fake.user_name()
        if user in seen or len(user) < 4:
            continue
        seen.add(user)
        i = len(out) + 1
        pw = fake.password(length=rng.randint(9, 14), special_chars=rng.random() < 0.5)
        if i >= 60 and rng.random() < 0.04:
            pw = rng.choice(REUSED)
        out.append({
            "id": i,
            "username": user,
            "password": pw,
            "name": name,
            "phone": fake.phone_number(),
            "email": f"{user}@{fake.free_email_domain()}",
        })
    out[VICTIM_ID - 1]["password"] = john_entry(VICTIM_JOHN_INDEX)
    out[0]["username"] = "admin"
    return out


def people(n, seed=SEED + 1):
    """Personal records: name, mobile, PRC ID (GB 11643 check digit), address, birthday."""
    fake = Faker("zh_CN")
    Faker.seed(seed)
    rows = []
    for i in range(1, n + 1):
        ssn = fake.ssn()
        rows.append({
            "id": i,
            "name": fake.name(),
            "phone": fake.phone_number(),
            "id_number": ssn,
            "birthday": f"{ssn[6:10]}-{ssn[10:12]}-{ssn[12:14]}",
            "address": fake.address().replace("\n", " "),
            "email": fake.email(),
            "company": fake.company(),
            "city": fake.city(),
        })
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["accounts"])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(accounts(), f, ensure_ascii=False, indent=0)


if __name__ == "__main__":
    main()
