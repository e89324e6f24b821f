"""The Postman collection, run by newman against the running platform: any failed assertion fails the build."""

from __future__ import annotations

import json
import subprocess

from .conftest import REPO_ROOT


def test_the_postman_collection_passes_through_the_gateway(platform, tmp_path):
    report = tmp_path / "newman.json"
    result = subprocess.run(
        [
            "newman", "run", str(REPO_ROOT / "postman/crud-master.postman_collection.json"),
            "--environment", str(REPO_ROOT / "postman/local.postman_environment.json"),
            "--env-var", f"base_url={platform.gateway}",
            "--reporters", "cli,json", "--reporter-json-export", str(report),
            "--timeout-request", "15000", "--color", "off", "--disable-unicode",
        ],
        capture_output=True, text=True, timeout=300,
    )
    stats = json.loads(report.read_text())["run"]["stats"]
    assert result.returncode == 0, result.stdout[-5000:]
    assert stats["assertions"]["failed"] == 0
    assert stats["requests"]["total"] == 37
    assert stats["assertions"]["total"] >= 90
