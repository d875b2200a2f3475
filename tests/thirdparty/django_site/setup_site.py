#!/usr/bin/env python3
"""Creates the lab's Django admin database: migrations, static files, the accounts (staff
users with permission to view and change people) and 1500 people (Faker zh_CN).

    LAB_DIR=<work dir> python3 setup_site.py --accounts accounts.json
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Permission, User  # noqa: E402
from django.core.management import call_command  # noqa: E402

import gen_data  # noqa: E402
from people.models import Person  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", required=True)
    ap.add_argument("--people", type=int, default=1500)
    a = ap.parse_args()
    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)
    perms = list(Permission.objects.filter(codename__in=["view_person", "change_person"]))
    with open(a.accounts, encoding="utf-8") as f:
        accounts = json.load(f)
    for acc in accounts:
        u = User(username=acc["username"], email=acc["email"], is_staff=True,
                 is_superuser=acc["id"] == 1, first_name=acc["name"][1:], last_name=acc["name"][:1])
        u.set_password(acc["password"])
        u.save()
        u.user_permissions.set(perms)
    Person.objects.bulk_create([
        Person(**{k: v for k, v in p.items()}) for p in gen_data.people(a.people)
    ])
    print(f"{len(accounts)} accounts, {a.people} people")


if __name__ == "__main__":
    main()
