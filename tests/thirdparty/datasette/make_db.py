#!/usr/bin/env python3
"""Generates the SQLite database Datasette serves in the lab: `customers` (Faker zh_CN
names, mobiles, PRC ID numbers, addresses) and their `orders`.

    python3 make_db.py --out shop.db
    datasette serve shop.db -h 10.213.0.1 -p 8000 --metadata metadata.json
"""
import argparse
import os
import random
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gen_data  # noqa: E402

PRODUCTS = ["保温杯", "蓝牙耳机", "充电宝", "雨伞", "茶叶礼盒", "运动鞋", "电饭煲", "台灯", "双肩包", "面膜"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--orders", type=int, default=6000)
    a = ap.parse_args()
    if os.path.exists(a.out):
        os.remove(a.out)
    db = sqlite3.connect(a.out)
    db.executescript("""
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, mobile TEXT, id_number TEXT,
            birthday TEXT, address TEXT, email TEXT, city TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
            product TEXT, quantity INTEGER, amount_cny REAL, created TEXT);
        CREATE INDEX orders_customer ON orders(customer_id);
    """)
    people = gen_data.people(a.customers, seed=gen_data.SEED + 2)
    db.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?,?,?)", [
        (p["id"], p["name"], p["phone"], p["id_number"], p["birthday"], p["address"], p["email"], p["city"])
        for p in people])
    rng = random.Random(gen_data.SEED)
    rows = []
    for i in range(1, a.orders + 1):
        q = rng.randint(1, 4)
        rows.append((i, rng.randint(1, a.customers), rng.choice(PRODUCTS), q,
                     round(q * rng.uniform(19, 499), 2),
                     f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(8, 22):02d}:{rng.randint(0, 59):02d}"))
    db.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?)", rows)
    db.commit()
    db.close()
    print(f"{a.customers} customers, {a.orders} orders")


if __name__ == "__main__":
    main()
