"""The chaos tests of TOPOLOGY=ha: the platform whose broker is three clustered RabbitMQ nodes, with two billing
consumers competing on its queue, started by scripts/test.sh with `scripts/up.sh` (TOPOLOGY=ha) on the test
settings, as the system tests' instance is; the fixtures are theirs."""

from __future__ import annotations

from tests.system.conftest import Platform, env, new_key, platform  # noqa: F401 - fixtures shared with tests/system
