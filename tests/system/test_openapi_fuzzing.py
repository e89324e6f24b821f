"""schemathesis against the running platform and openapi.yaml, every check on: the description is exactly as
strict as the behaviour (no schema-valid request refused, no schema-violating one accepted, every status,
header and body documented, 405 with Allow for the methods that do not exist)."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

FIXED_SEED = 20261201
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.parametrize("seed", [FIXED_SEED, random.SystemRandom().randrange(2**31)], ids=["fixed-seed", "fresh-seed"])
def test_schemathesis_finds_nothing(platform, capsys, tmp_path, seed):
    with capsys.disabled():
        print(f"\n    schemathesis --seed {seed} (replay: tests/.venv/bin/schemathesis run openapi.yaml "
              f"--url {platform.gateway} --checks all --seed {seed} -w 1)")
    # One worker: the stateful phase creates, reads and deletes movies, and another worker's DELETE /api/movies
    # in between would make a vanished movie look like a bug.
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", str(REPO_ROOT / "openapi.yaml"), "--url", platform.gateway, "--checks", "all",
         "--seed", str(seed), "--workers", "1", "--generation-database", "none", "--no-color",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    # Every generated case passed, and there were some. A warning (such as random ids that found no movie) is
    # schemathesis's advice on its own coverage, not a finding about the API.
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts and int(counts[1]) == int(counts[2]) > 100, result.stdout[-3000:]
