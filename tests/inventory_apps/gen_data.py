#!/usr/bin/env python3
"""Generates the data the inventory evaluation apps serve (json-server, Datasette) with Faker
(zh_CN and en_US, seeded) and writes the field-level label truth beside it.

    gen_data.py OUT_DIR [--seed N]

OUT_DIR/db.json           json-server database (users with word ids, posts, comments)
OUT_DIR/shop.db           SQLite database Datasette serves (customers with text keys, orders)
OUT_DIR/labels_truth.json {app: {resource: {field: label or null}}}: which field carries which
                          data label; `null` marks checksum-invalid look-alikes that must not
                          be labelled.
"""
import json
import random
import sqlite3
import sys
from pathlib import Path

from faker import Faker

WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
CHECK = "10X98765432"


def prc_check(body17: str) -> str:
    return CHECK[sum(int(d) * w for d, w in zip(body17, WEIGHTS)) % 11]


def prc_lookalike(rng: random.Random, fake_cn: Faker) -> str:
    """An 18-character PRC-ID-shaped number whose check digit is wrong."""
    real = fake_cn.ssn()
    good = real[-1]
    bad = rng.choice([c for c in "0123456789" if c != good])
    return real[:17] + bad


def luhn_ok(num: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(num)):
        n = int(d)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def card_lookalike(rng: random.Random) -> str:
    """A 16-digit UnionPay-prefixed number that fails the Luhn check."""
    while True:
        n = "62" + "".join(rng.choice("0123456789") for _ in range(14))
        if not luhn_ok(n):
            return n


def unionpay_card(rng: random.Random) -> str:
    """A Luhn-valid 16-digit UnionPay card number."""
    while True:
        n = "6222" + "".join(rng.choice("0123456789") for _ in range(12))
        if luhn_ok(n):
            return n


def username(fake: Faker, rng: random.Random, used: set) -> str:
    while True:
        style = rng.randrange(3)
        if style == 0:
            u = f"{fake.first_name()}.{fake.last_name()}".lower()
        elif style == 1:
            u = fake.user_name()
        else:
            u = f"{fake.last_name()}{fake.first_name()}".lower()
        u = "".join(c for c in u if c.isascii() and (c.isalnum() or c in "._-"))
        if u and u[0].isalpha() and u not in used:
            used.add(u)
            return u


def main() -> None:
    out = Path(sys.argv[1])
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 7
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    Faker.seed(seed)
    en, cn = Faker("en_US"), Faker("zh_CN")
    used: set = set()

    users = []
    for _ in range(40):
        users.append(
            {
                "id": username(en, rng, used),
                "name": cn.name(),
                "email": en.email(),
                "mobile": cn.phone_number(),
                "id_card": cn.ssn(),
                "bank_card": unionpay_card(rng),
                "city": en.city(),
                "serial_no": prc_lookalike(rng, cn),
                "voucher": card_lookalike(rng),
            }
        )
    posts = []
    for i in range(1, 61):
        posts.append(
            {
                "id": i,
                "userId": rng.choice(users)["id"],
                "title": en.sentence(nb_words=5),
                "body": en.paragraph(nb_sentences=2),
            }
        )
    comments = []
    for i in range(1, 121):
        comments.append(
            {
                "id": i,
                "postId": rng.randrange(1, 61),
                "email": en.email(),
                "body": en.sentence(nb_words=8),
            }
        )
    (out / "db.json").write_text(
        json.dumps({"users": users, "posts": posts, "comments": comments}, ensure_ascii=False, indent=1)
    )

    db = out / "shop.db"
    if db.exists():
        db.unlink()
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE customers (handle TEXT PRIMARY KEY, full_name TEXT, email TEXT, "
        "mobile TEXT, id_card TEXT, bank_card TEXT, city TEXT, member_no TEXT, coupon TEXT)"
    )
    con.execute(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT REFERENCES customers(handle), "
        "item TEXT, amount REAL)"
    )
    handles = []
    for _ in range(40):
        h = username(en, rng, used)
        handles.append(h)
        con.execute(
            "INSERT INTO customers VALUES (?,?,?,?,?,?,?,?,?)",
            (
                h,
                cn.name(),
                en.email(),
                cn.phone_number(),
                cn.ssn(),
                unionpay_card(rng),
                cn.city(),
                prc_lookalike(rng, cn),
                card_lookalike(rng),
            ),
        )
    for i in range(1, 81):
        con.execute(
            "INSERT INTO orders VALUES (?,?,?,?)",
            (i, rng.choice(handles), en.word(), round(rng.uniform(1, 500), 2)),
        )
    con.commit()
    con.close()

    truth = {
        "jsonserver": {
            "users": {
                "name": "person_name",
                "email": "email",
                "mobile": "mobile",
                "id_card": "prc_id",
                "bank_card": "bank_card",
                "serial_no": None,
                "voucher": None,
            },
            "comments": {"email": "email"},
        },
        "datasette": {
            "customers": {
                "full_name": "person_name",
                "email": "email",
                "mobile": "mobile",
                "id_card": "prc_id",
                "bank_card": "bank_card",
                "member_no": None,
                "coupon": None,
            }
        },
    }
    (out / "labels_truth.json").write_text(json.dumps(truth, indent=1))
    (out / "ids.json").write_text(
        json.dumps({"users": [u["id"] for u in users], "customers": handles}, indent=1)
    )


if __name__ == "__main__":
    main()
