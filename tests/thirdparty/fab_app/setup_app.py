#!/usr/bin/env python3
"""Creates the lab's FAB database: the accounts (role Staff; account 1 `admin` is Admin)
and 1500 contacts (Faker zh_CN).

    LAB_DIR=<work dir> python3 setup_app.py --accounts accounts.json
"""
import argparse
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import gen_data  # noqa: E402
from app import Contact, create_app, db  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", required=True)
    ap.add_argument("--contacts", type=int, default=1500)
    a = ap.parse_args()
    app = create_app()
    with app.app_context():
        sm = app.appbuilder.sm
        staff = sm.find_role("Staff")
        admin = sm.find_role("Admin")
        with open(a.accounts, encoding="utf-8") as f:
            accounts = json.load(f)
        for acc in accounts:
            user = sm.add_user(acc["username"], acc["name"][1:], acc["name"][:1], acc["email"],
                               [admin] if acc["id"] == 1 else [staff], acc["password"])
            if not user:
                raise SystemExit(f"cannot add {acc['username']}")
        for p in gen_data.people(a.contacts):
            db.session.add(Contact(
                id=p["id"], name=p["name"], mobile=p["phone"], id_number=p["id_number"],
                birthday=datetime.date.fromisoformat(p["birthday"]), address=p["address"],
                email=p["email"], company=p["company"]))
        db.session.commit()
        print(f"{len(accounts)} accounts, {a.contacts} contacts")


if __name__ == "__main__":
    main()
