"""`make up` on a platform that is already up changes nothing, and says so."""

from __future__ import annotations

import json
import subprocess

from .conftest import REPO_ROOT


def test_a_second_make_up_is_a_no_op(platform):
    before = platform.pm2("jlist")
    result = subprocess.run(["bash", "scripts/up.sh"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stderr
    assert "started under PM2" not in result.stderr
    after = platform.pm2("jlist")
    # Same processes: nothing was restarted.
    assert _pids(before) == _pids(after)


def _pids(jlist: str) -> dict[str, int]:
    return {app["name"]: app["pid"] for app in json.loads(jlist)}
