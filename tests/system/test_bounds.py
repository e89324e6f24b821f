"""What the provisioning bounds, seen on the running platform: billing_queue and its dead-letter queue have the
lengths of .env (a full billing_queue makes the gateway answer 503 and loses nothing), and what nobody outside
the machine needs listens on loopback only."""

from __future__ import annotations

import json
import subprocess

from crud_common.testing import wait_for

from .conftest import env

ORDER = {"user_id": 11, "number_of_items": 2, "total_amount": "4.50"}
LOOPBACK = {"127.0.0.1", "[::1]"}


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60,
                          check=True).stdout


def effective_policy(queue: str) -> dict:
    """The definition of the policy the broker applies to this queue now ({} for none)."""
    vhost = env("RABBITMQ_VHOST")
    queues = json.loads(rabbitmqctl("list_queues", "-p", vhost, "name", "policy", "--formatter", "json"))
    applied = next(row["policy"] for row in queues if row["name"] == queue)
    policies = json.loads(rabbitmqctl("list_policies", "-p", vhost, "--formatter", "json"))
    return next((json.loads(row["definition"]) for row in policies if row["name"] == applied), {})


def test_billing_queue_and_its_dead_letter_queue_are_bounded_as_env_says():
    queue = env("RABBITMQ_QUEUE")
    assert effective_policy(queue) == {"max-length": int(env("BILLING_QUEUE_MAX_LENGTH")),
                                       "overflow": "reject-publish"}
    assert effective_policy(f"{queue}.dead") == {"max-length": int(env("BILLING_DEAD_LETTER_MAX_LENGTH")),
                                                 "overflow": "reject-publish"}


def test_a_full_billing_queue_is_a_503_and_every_200_is_stored_once(platform, new_key):
    queue, policy = env("RABBITMQ_QUEUE"), "test-small-billing-queue"
    platform.pm2("stop", "billing_app")
    accepted: list[str] = []
    try:
        # A limit just above what is queued now, above the provisioned one (priority 10), while nothing consumes.
        limit = platform.queue_depth() + 3
        rabbitmqctl("set_policy", "-p", env("RABBITMQ_VHOST"), "--apply-to", "queues", "--priority", "10", policy,
                    f"^{queue}$", json.dumps({"max-length": limit, "overflow": "reject-publish"}))
        wait_for("the small limit to apply", lambda: effective_policy(queue).get("max-length") == limit)
        refused = None
        for _ in range(limit + 5):
            answer = platform.post_order(ORDER, new_key())
            if answer.status_code != 200:
                refused = answer
                break
            accepted.append(answer.json()["message_id"])
        assert refused is not None and refused.status_code == 503, accepted
        assert refused.json()["error"] == "service_unavailable" and "queue" in refused.json()["message"]
        assert refused.json()["request_id"] == refused.headers["X-Request-ID"]
        # A quorum queue refuses once it is over its limit: it takes the message that reaches the limit plus one.
        assert len(accepted) == 4
    finally:
        rabbitmqctl("clear_policy", "-p", env("RABBITMQ_VHOST"), policy)
        platform.pm2("start", "billing_app")
    wait_for("every accepted order in orders_db",
             lambda: platform.orders_with_ids(accepted) == dict.fromkeys(accepted, 1), timeout_s=60)
    # Once the consumer has made room, the gateway takes orders again.
    wait_for("orders to be taken again", lambda: platform.post_order(ORDER, new_key()).status_code == 200,
             timeout_s=30)


def listening(port: str | int) -> set[str]:
    lines = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    return {line.split()[3].rsplit(":", 1)[0] for line in lines}


def test_what_only_this_machine_uses_listens_on_loopback_only(platform):
    # billing_app may still be starting again after the test above stopped it.
    wait_for("billing's status port", lambda: listening(env("BILLING_STATUS_PORT")), timeout_s=30)
    for name, port in [("RabbitMQ", env("RABBITMQ_PORT")), ("RabbitMQ's distribution port", 25672),
                       ("epmd", 4369), ("PostgreSQL", env("INVENTORY_DB_PORT")),
                       ("billing's status", env("BILLING_STATUS_PORT")),
                       ("the gateway's metrics", env("GATEWAY_METRICS_PORT")),
                       ("the inventory's metrics", env("INVENTORY_METRICS_PORT"))]:
        addresses = listening(port)
        assert addresses and addresses <= LOOPBACK, f"{name} (:{port}) listens on {addresses}"
