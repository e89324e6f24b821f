"""Promises the repository itself keeps, checked on the tracked tree (no running platform needed)."""

from __future__ import annotations

import subprocess

from .conftest import REPO_ROOT


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
    return [name for name in listing.stdout.decode().split("\0") if name]


def secrets_of_env_file() -> dict[str, str]:
    secrets = {}
    for line in (REPO_ROOT / ".env").read_text().splitlines():
        key, _, value = line.partition("=")
        if not line.startswith("#") and any(word in key for word in ("PASSWORD", "SECRET", "TOKEN", "COOKIE")):
            secrets[key] = value
    return secrets


def test_every_credential_lives_in_env_only() -> None:
    secrets = secrets_of_env_file()
    assert secrets, ".env holds no credential at all: the check below would prove nothing"
    leaks = []
    for name in tracked_files():
        path = REPO_ROOT / name
        if name == ".env" or not path.is_file():
            continue
        text = path.read_bytes().decode(errors="replace")
        leaks += [f"{key} in {name}" for key, value in secrets.items() if value in text]
    assert not leaks, f"credentials outside .env: {leaks}"
