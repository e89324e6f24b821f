"""The exercise's audit (../shared/AUDIT.md), step by step, on one machine: what an auditor types, typed.

The platform under test is `make test`'s own instance, so its databases are the *_TEST_DB_NAME ones and its PM2
daemon is TEST_PM2_HOME's: that is the one difference from the README's walkthrough, where the auditor types
`\\c movies_db` and `\\c orders_db` and plain `sudo pm2 ...`.
"""

from __future__ import annotations

import json
import os
import subprocess

import requests

from crud_common.testing import wait_for

from .conftest import REPO_ROOT, env

AUDIT_MOVIE = {"title": "A new movie", "description": "Very short description"}
JSON = {"Content-Type": "application/json"}


def psql_as_postgres(*typed: str) -> str:
    """`sudo -i -u postgres`, then `psql`, then each line typed at its prompt; what psql printed."""
    result = subprocess.run(["sudo", "-i", "-u", "postgres", "psql"], input="\n".join(typed) + "\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr, result.stderr
    return result.stdout


def sudo_pm2(*args: str) -> str:
    """`sudo pm2 ...` on the test instance's PM2 daemon (sudo resets the environment; PM2_HOME is kept)."""
    result = subprocess.run(["sudo", "--preserve-env=PM2_HOME", "pm2", *args], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PM2_HOME": env("PM2_HOME")})
    assert result.returncode == 0, result.stderr
    return result.stdout


def app_status(name: str) -> str:
    apps = json.loads(sudo_pm2("jlist"))
    return next(app["pm2_env"]["status"] for app in apps if app["name"] == name)


def post_order(gateway: str, order: dict) -> requests.Response:
    return requests.post(f"{gateway}/api/billing/", data=json.dumps(order), headers=JSON, timeout=15)


def test_the_audit_passes_as_written(platform):
    gateway = platform.gateway
    movies_db, orders_db = env("INVENTORY_DB_NAME"), env("BILLING_DB_NAME")
    # More movies than a page ever held, before the audit's POST: step 8 must still show the new one.
    for n in range(25):
        assert requests.post(f"{gateway}/api/movies/", json={"title": f"Already there {n}"}, timeout=15).ok

    # 7. POST /api/movies/ with the audit's body: 200.
    created = requests.post(f"{gateway}/api/movies/", data=json.dumps(AUDIT_MOVIE), headers=JSON, timeout=15)
    assert created.status_code == 200, created.text
    movie = created.json()
    assert movie == {"id": movie["id"], **AUDIT_MOVIE}

    # 8. GET /api/movies/: 200, with the movie just added.
    listed = requests.get(f"{gateway}/api/movies/", timeout=30)
    assert listed.status_code == 200
    assert movie in listed.json() and len(listed.json()) > 25

    # 9. The Postman collection, every folder but the last (it wipes the catalog: run after step 11).
    newman = subprocess.run(
        ["newman", "run", str(REPO_ROOT / "postman/crud-master.postman_collection.json"),
         "--environment", str(REPO_ROOT / "postman/local.postman_environment.json"),
         "--env-var", f"base_url={gateway}", "--folder", "Platform", "--folder", "Movies",
         "--folder", "Movies: bad input", "--folder", "Billing", "--color", "off", "--disable-unicode"],
        capture_output=True, text=True, timeout=300,
    )
    assert newman.returncode == 0, newman.stdout[-4000:]

    # 10-11. inventory's PostgreSQL: \l lists the movies database; its table holds the movie of step 7.
    databases = psql_as_postgres("\\l")
    assert movies_db in databases
    table = psql_as_postgres(f"\\c {movies_db}", "TABLE movies;")
    assert f"You are now connected to database \"{movies_db}\"" in table
    assert any(line.split("|")[0].strip() == str(movie["id"]) and "A new movie" in line
               and "Very short description" in line for line in table.splitlines()), table

    # 12. An order: 200.
    first = post_order(gateway, {"user_id": "20", "number_of_items": "99", "total_amount": "250"})
    assert first.status_code == 200, first.text

    # 13. sudo pm2 stop billing_app; sudo pm2 list: stopped.
    sudo_pm2("stop", "billing_app")
    try:
        assert "billing_app" in sudo_pm2("list")
        assert app_status("billing_app") == "stopped"

        # 14. Another order while billing is down: still 200.
        second = post_order(gateway, {"user_id": "22", "number_of_items": "10", "total_amount": "50"})
        assert second.status_code == 200, second.text

        # 15-17. billing's PostgreSQL: \l lists the orders database; the order of user 20, not yet the one of 22.
        assert orders_db in psql_as_postgres("\\l")
        orders = psql_as_postgres(f"\\c {orders_db}", "TABLE orders;")
        assert row_of(orders, first.json()["message_id"]) == ["20", "99", "250.00"]
        assert row_of(orders, second.json()["message_id"]) is None
    finally:
        # 18. sudo pm2 start billing_app; the table again: the order of user 22 is there now.
        sudo_pm2("start", "billing_app")
    assert app_status("billing_app") == "online"
    wait_for("the order of user 22 in TABLE orders once billing_app runs again",
             lambda: row_of(psql_as_postgres(f"\\c {orders_db}", "TABLE orders;"), second.json()["message_id"]),
             timeout_s=60)
    orders = psql_as_postgres(f"\\c {orders_db}", "TABLE orders;")
    assert row_of(orders, second.json()["message_id"]) == ["22", "10", "50.00"]
    assert sum(second.json()["message_id"] in line for line in orders.splitlines()) == 1


def row_of(table: str, message_id: str) -> list[str] | None:
    """The user_id, number_of_items and total_amount of the row of `TABLE orders;` that holds message_id."""
    header, *rows = [line for line in table.splitlines() if "|" in line]
    columns = [name.strip() for name in header.split("|")]
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")]
        if cells[columns.index("message_id")] == message_id:
            return [cells[columns.index(name)] for name in ("user_id", "number_of_items", "total_amount")]
    return None
