"""POST /api/billing: validated orders reach billing_queue persistently, 200 only after the broker confirmed,
503 (never 200) when it cannot take them; invalid input is refused and nothing is published."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time

import pytest
from app.publisher import BrokerUnavailable

ORDER = {"user_id": "3", "number_of_items": "5", "total_amount": "180"}


def get_message(amqp, queue: str):
    method, properties, body = amqp.basic_get(queue, auto_ack=True)
    assert method is not None, "no message in the queue"
    return properties, json.loads(body)


def assert_queue_empty(amqp, queue: str) -> None:
    assert amqp.queue_declare(queue, passive=True).method.message_count == 0


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def publishes(client) -> dict[str, float]:
    """What became of the orders this gateway published (its metrics)."""
    registry = client.application.extensions["metrics"].registry
    return {outcome: registry.get_sample_value("gateway_order_publishes_total", {"outcome": outcome})
            for outcome in ("confirmed", "refused", "failed")}


def test_order_is_published_persistently_then_answered(client, amqp, config):
    response = client.post("/api/billing", json=ORDER, headers={"X-Request-ID": "order-req-1"})
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert body["message"] == "Message posted"
    assert body["request_id"] == response.headers["X-Request-ID"] == "order-req-1"

    properties, message = get_message(amqp, config.rabbitmq.queue)
    assert message == {"user_id": 3, "number_of_items": 5, "total_amount": "180.00"}
    assert properties.message_id == body["message_id"] and len(body["message_id"]) == 32
    assert properties.correlation_id == "order-req-1"
    assert properties.delivery_mode == 2
    assert properties.content_type == "application/json"
    assert abs(properties.timestamp - time.time()) < 60
    assert_queue_empty(amqp, config.rabbitmq.queue)
    assert publishes(client) == {"confirmed": 1, "refused": 0, "failed": 0}


@pytest.mark.parametrize(
    ("order", "published"),
    [
        ({"user_id": 3, "number_of_items": 5, "total_amount": 180}, {"user_id": 3, "number_of_items": 5, "total_amount": "180.00"}),
        ({"user_id": "0", "number_of_items": 0, "total_amount": "0.5"}, {"user_id": 0, "number_of_items": 0, "total_amount": "0.50"}),
        ({"user_id": 7, "number_of_items": "12", "total_amount": 19.99}, {"user_id": 7, "number_of_items": 12, "total_amount": "19.99"}),
        ({"user_id": 10**18 - 1, "number_of_items": 10**9 - 1, "total_amount": "9999999999.99"},
         {"user_id": 10**18 - 1, "number_of_items": 10**9 - 1, "total_amount": "9999999999.99"}),
        ({"user_id": "9" * 18, "number_of_items": "9" * 9, "total_amount": 9999999999.99},
         {"user_id": 10**18 - 1, "number_of_items": 10**9 - 1, "total_amount": "9999999999.99"}),
        # -0.0 is a JSON number equal to 0: published as 0.00 (not "-0.00", which the consumer would refuse).
        ({"user_id": 1, "number_of_items": 1, "total_amount": -0.0}, {"user_id": 1, "number_of_items": 1, "total_amount": "0.00"}),
        ({"user_id": "007", "number_of_items": 1, "total_amount": "180.500"}, {"user_id": 7, "number_of_items": 1, "total_amount": "180.50"}),
    ],
)
def test_numbers_and_strings_are_accepted(client, amqp, config, order, published):
    response = client.post("/api/billing/", json=order)
    assert response.status_code == 200, response.data
    assert get_message(amqp, config.rabbitmq.queue)[1] == published


def test_a_retry_with_the_same_idempotency_key_is_the_same_message(client, amqp, config):
    # The same order written two ways is one canonical order: a retry.
    ids = set()
    for order in (ORDER, {"user_id": 3, "number_of_items": 5, "total_amount": 180.0}):
        response = client.post("/api/billing", json=order, headers={"Idempotency-Key": "order-2024-0001"})
        assert response.status_code == 200
        ids.add(response.get_json()["message_id"])
    first, second = get_message(amqp, config.rabbitmq.queue), get_message(amqp, config.rabbitmq.queue)
    assert {first[0].message_id} == {second[0].message_id} == ids
    assert len(ids.pop()) == 32
    assert first[1] == second[1]


def test_the_same_idempotency_key_with_another_order_is_another_message(client, amqp, config):
    # Never a 200 for an order the consumer would then drop as a duplicate of the first.
    first = client.post("/api/billing", json=ORDER, headers={"Idempotency-Key": "reused"})
    other = client.post("/api/billing", json={**ORDER, "number_of_items": "6"}, headers={"Idempotency-Key": "reused"})
    assert first.status_code == other.status_code == 200
    assert first.get_json()["message_id"] != other.get_json()["message_id"]
    published = [get_message(amqp, config.rabbitmq.queue) for _ in range(2)]
    assert [properties.message_id for properties, _ in published] == [
        first.get_json()["message_id"], other.get_json()["message_id"]]
    assert [message["number_of_items"] for _, message in published] == [5, 6]


def test_without_a_key_every_order_gets_a_new_message_id(client, amqp, config):
    ids = {client.post("/api/billing", json=ORDER).get_json()["message_id"] for _ in range(3)}
    assert len(ids) == 3


BAD_REQUESTS = [
    # (content type, raw body, status, error, field named)
    ("text/plain", json.dumps(ORDER), 415, "unsupported_media_type", None),
    (None, json.dumps(ORDER), 415, "unsupported_media_type", None),
    ("application/json", "{not json", 400, "bad_request", None),
    ("application/json", "", 400, "bad_request", None),
    ("application/json", "[1, 2]", 400, "bad_request", None),
    ("application/json", '"text"', 400, "bad_request", None),
    ("application/json", '{"user_id": NaN, "number_of_items": 1, "total_amount": 1}', 400, "bad_request", None),
    ("application/json", json.dumps({"number_of_items": 1, "total_amount": 1}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "user_id": -1}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "user_id": "-1"}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "user_id": True}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "user_id": "3a"}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "user_id": 1.5}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "user_id": None}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "user_id": 10**18}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "user_id": "1" * 19}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "user_id": 5.0}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "user_id": "+5"}), 400, "validation_error", "user_id"),
    ("application/json", json.dumps({**ORDER, "number_of_items": False}), 400, "validation_error", "number_of_items"),
    ("application/json", json.dumps({**ORDER, "number_of_items": 10**9}), 400, "validation_error", "number_of_items"),
    ("application/json", json.dumps({**ORDER, "number_of_items": "1" * 10}), 400, "validation_error", "number_of_items"),
    ("application/json", json.dumps({**ORDER, "number_of_items": " 5"}), 400, "validation_error", "number_of_items"),
    ("application/json", json.dumps({**ORDER, "total_amount": "-1"}), 400, "validation_error", "total_amount"),
    ("application/json", json.dumps({**ORDER, "total_amount": -0.5}), 400, "validation_error", "total_amount"),
    ("application/json", json.dumps({**ORDER, "total_amount": "1.234"}), 400, "validation_error", "total_amount"),
    ("application/json", '{"user_id": 1, "number_of_items": 1, "total_amount": 180.501}', 400, "validation_error", "total_amount"),
    ("application/json", json.dumps({**ORDER, "total_amount": "-0"}), 400, "validation_error", "total_amount"),
    ("application/json", json.dumps({**ORDER, "total_amount": "180."}), 400, "validation_error", "total_amount"),
    ("application/json", json.dumps({**ORDER, "total_amount": "00000000001"}), 400, "validation_error", "total_amount"),
    ("application/json", json.dumps({**ORDER, "total_amount": "1e3"}), 400, "validation_error", "total_amount"),
    ("application/json", json.dumps({**ORDER, "total_amount": True}), 400, "validation_error", "total_amount"),
    ("application/json", json.dumps({**ORDER, "total_amount": "10000000000"}), 400, "validation_error", "total_amount"),
    ("application/json", json.dumps({**ORDER, "coupon": "FREE"}), 400, "validation_error", "coupon"),
    ("application/json", json.dumps({**ORDER, "pad": "x" * 70_000}), 413, "payload_too_large", "body"),
    ("application/json", "[" * 10_000 + "]" * 10_000, 400, "bad_request", "body"),
    ("application/json", '{"user_id": ' + "[" * 5_000 + "]" * 5_000 + "}", 400, "bad_request", "body"),
    ("application/json", "{", 400, "bad_request", "body"),
    ("text/plain", json.dumps(ORDER), 415, "unsupported_media_type", "Content-Type"),
]


@pytest.mark.parametrize(("content_type", "raw", "status", "error", "field"), BAD_REQUESTS)
def test_bad_input_is_refused_and_nothing_is_published(client, amqp, config, content_type, raw, status, error, field):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/billing", data=raw.encode(), headers=headers)
    assert response.status_code == status, response.data
    body = response.get_json()
    assert body["error"] == error and body["request_id"] == response.headers["X-Request-ID"]
    if field:
        assert field in [detail["field"] for detail in body["details"]]
        assert all(detail["reason"] for detail in body["details"])
    assert_queue_empty(amqp, config.rabbitmq.queue)


@pytest.mark.parametrize("key", ["", "x" * 129, "with space", "caf\u00e9"])
def test_bad_idempotency_key_is_refused(client, amqp, config, key):
    response = client.post("/api/billing", json=ORDER, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.get_json()["details"][0]["field"] == "Idempotency-Key"
    assert_queue_empty(amqp, config.rabbitmq.queue)


def test_wrong_method_is_405_with_allow(client):
    response = client.get("/api/billing")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_a_killed_connection_does_not_fail_the_next_order(client, amqp, config):
    assert client.post("/api/billing", json=ORDER).status_code == 200  # opens this thread's connection
    rabbitmqctl("close_all_connections", "-p", config.rabbitmq.vhost, "test: simulated connection loss")
    time.sleep(0.2)  # let the broker's close frame arrive
    response = client.post("/api/billing", json=ORDER)
    assert response.status_code == 200, response.data
    # The test's own channel was closed too; count with a new one.
    from .conftest import open_channel

    with open_channel(config) as channel:
        assert channel.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 2


def test_an_idle_connection_stays_open(make_client, amqp, config, caplog):
    # A 1 s heartbeat: the broker closes a connection that misses two of them. The publisher's I/O thread
    # answers them while the gateway is idle, so the second order goes out on the first order's connection.
    client = make_client(amqp_heartbeat_s=1)
    with caplog.at_level(logging.INFO, logger="app.publisher"):
        assert client.post("/api/billing", json=ORDER).status_code == 200
        time.sleep(4)
        response = client.post("/api/billing", json=ORDER)
    assert response.status_code == 200, response.data
    assert [r.getMessage() for r in caplog.records if "connection" in r.getMessage()] == [
        f"AMQP connection opened to {config.rabbitmq.host}:{config.rabbitmq.port}/{config.rabbitmq.vhost}"]
    assert amqp.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 2


@pytest.mark.parametrize("nodes", ["127.0.0.1:1,{node}", "{node},127.0.0.1:1"])
def test_a_node_that_is_away_is_passed_over(make_client, amqp, config, nodes):
    # Port 1 of loopback refuses every connection: a broker node that is down. Whichever node a process starts
    # at, its orders reach the live one.
    node = f"{config.rabbitmq.host}:{config.rabbitmq.port}"
    client = make_client(rabbitmq={"host": nodes.format(node=node)})
    for _ in range(3):
        assert client.post("/api/billing", json=ORDER).status_code == 200
    assert amqp.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 3
    assert publishes(client) == {"confirmed": 3, "refused": 0, "failed": 0}


def test_every_node_away_is_a_503(make_client, amqp, config):
    client = make_client(rabbitmq={"host": "127.0.0.1:1,127.0.0.1:2"})
    response = client.post("/api/billing", json=ORDER)
    assert response.status_code == 503 and response.get_json()["error"] == "service_unavailable"
    assert publishes(client) == {"confirmed": 0, "refused": 0, "failed": 1}
    assert client.get("/health").get_json()["down"] == ["rabbitmq"]


def broker_pid() -> int:
    answer = subprocess.run(["rabbitmqctl", "-q", "eval", "os:getpid()."], check=True, capture_output=True,
                            text=True, timeout=120).stdout
    return int(answer.strip().strip('"'))


def queued_message_ids(amqp, queue: str) -> list[str]:
    ids = []
    while (message := amqp.basic_get(queue, auto_ack=True))[0] is not None:
        ids.append(message[1].message_id)
    return ids


def test_a_broker_that_never_confirms_is_a_503_within_the_timeout(make_client, amqp, config):
    # A stopped broker process: its kernel still acknowledges the bytes, so the connection looks alive and the
    # message is sent, but no confirm ever comes (as with a quorum queue that lost its majority).
    client = make_client(amqp_timeout_s=1)
    first = client.post("/api/billing", json=ORDER, headers={"Idempotency-Key": "confirmed-before-the-stop"})
    assert first.status_code == 200
    pid = broker_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        unconfirmed = client.post("/api/billing", json=ORDER, headers={"Idempotency-Key": "sent-while-stopped"})
        waited = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert unconfirmed.status_code == 503, unconfirmed.data
    assert unconfirmed.get_json()["error"] == "service_unavailable"
    assert waited < 5  # its 1 s bound, not the heartbeat's minutes
    assert publishes(client) == {"confirmed": 1, "refused": 0, "failed": 1}
    # The broker is back: the client's retry of the 503 (same key, same order) is taken.
    deadline = time.monotonic() + 30
    while (retry := client.post("/api/billing", json=ORDER, headers={"Idempotency-Key": "sent-while-stopped"})
           ).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert retry.status_code == 200, retry.data
    # Nothing but these two orders is queued: the first once, the retried one once or twice (the broker may
    # have taken the unconfirmed copy too; the consumer stores a message id once).
    ids = queued_message_ids(amqp, config.rabbitmq.queue)
    assert ids.count(first.get_json()["message_id"]) == 1
    assert 1 <= ids.count(retry.get_json()["message_id"]) <= 2
    assert set(ids) == {first.get_json()["message_id"], retry.get_json()["message_id"]}


def test_a_deleted_queue_is_declared_again(client, amqp, config):
    assert client.post("/api/billing", json=ORDER).status_code == 200
    amqp.queue_delete(config.rabbitmq.queue)
    # The first try comes back unroutable; the gateway reconnects, declares the topology, publishes again.
    assert client.post("/api/billing", json=ORDER).status_code == 200
    assert amqp.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 1


def test_broker_down_gives_503_never_200_and_recovers_without_restart(client, amqp, config):
    from .conftest import open_channel

    assert client.post("/api/billing", json=ORDER).status_code == 200
    try:
        rabbitmqctl("stop_app")
        for _ in range(2):  # both the dead connection and a fresh attempt fail cleanly
            started = time.monotonic()
            response = client.post("/api/billing", json=ORDER)
            assert response.status_code == 503, response.data
            assert response.get_json()["error"] == "service_unavailable"
            assert time.monotonic() - started < 12
        assert publishes(client) == {"confirmed": 1, "refused": 0, "failed": 2}
        health = client.get("/health")
        assert health.status_code == 503 and health.get_json()["down"] == ["rabbitmq"]
    finally:
        rabbitmqctl("start_app")
    deadline = time.monotonic() + 60
    while (status := client.post("/api/billing", json=ORDER).status_code) != 200 and time.monotonic() < deadline:
        assert status == 503
        time.sleep(0.5)
    assert status == 200
    assert client.get("/health").status_code == 200
    with open_channel(config) as channel:
        # The order answered before the stop and the one after it; none of the 503s.
        assert channel.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 2


def test_a_full_queue_nacks_and_the_answer_is_503_never_200(client, amqp, config, caplog):
    # The queue's overflow behaviour is reject-publish: once it is over its length limit, the broker nacks.
    from crud_common.billing import declare_billing_queue

    queue, policy = config.rabbitmq.queue, "test-full-billing-queue"
    # Priority 10: above the provisioned limit (scripts/lib/rabbitmq.sh), which may be on this vhost too.
    rabbitmqctl("set_policy", "-p", config.rabbitmq.vhost, "--apply-to", "queues", "--priority", "10", policy,
                f"^{queue}$", '{"max-length": 1}')
    caplog.set_level(logging.INFO, logger="app.publisher")
    # /health's questions to the broker (the queue's depth) go on meanwhile, on the channel a refusal replaces.
    publisher, checking = client.application.extensions["publisher"], threading.Event()
    depths: list[int | str] = []

    def check_the_queue() -> None:
        while not checking.is_set():
            try:
                depths.append(publisher.queue_state().messages)
            except BrokerUnavailable as exc:
                depths.append(str(exc))

    checker = threading.Thread(target=check_the_queue, daemon=True)
    checker.start()
    try:
        deadline = time.monotonic() + 15  # the broker applies a policy asynchronously
        statuses: list[int] = []
        while 503 not in statuses and time.monotonic() < deadline:
            statuses.append(client.post("/api/billing", json=ORDER).status_code)
        assert statuses[-1] == 503, statuses
        assert set(statuses[:-1]) <= {200}
        refused = client.post("/api/billing", json=ORDER)
        assert refused.status_code == 503 and refused.get_json()["error"] == "service_unavailable"
        # Counted as refused by the broker, not as a broker that is away.
        assert publishes(client) == {"confirmed": statuses.count(200), "refused": 2, "failed": 0}
        # Every 200 is a message in the queue; no 503 is.
        drained = 0
        while amqp.basic_get(queue, auto_ack=True)[0] is not None:
            drained += 1
        assert drained == statuses.count(200)
        # Once the consumer has made room, orders are taken again.
        assert client.post("/api/billing", json=ORDER).status_code == 200
        checking.set()
        checker.join(timeout=10)
        assert depths and all(isinstance(depth, int) for depth in depths), depths
        # Each refusal cost a new channel, never a new connection: a flood of orders against a full queue is
        # no flood of connections to the broker.
        messages = [record.getMessage() for record in caplog.records]
        assert sum(message.startswith("AMQP connection opened") for message in messages) == 1, messages
        assert sum(message.startswith("AMQP channel replaced: a message refused") for message in messages) >= 2
    finally:
        checking.set()
        # RabbitMQ 3.10 keeps a quorum queue that was over its limit refusing publishes when the limit is
        # removed; a fresh queue leaves nothing behind for the next test.
        rabbitmqctl("clear_policy", "-p", config.rabbitmq.vhost, policy)
        amqp.queue_delete(queue)
        declare_billing_queue(amqp, queue)


def test_an_amqp_io_thread_that_died_is_replaced(client, amqp, config):
    # A bug in a callback ends the I/O thread's loop: the next order must not wait on a thread that is gone.
    assert client.post("/api/billing", json=ORDER).status_code == 200
    publisher = client.application.extensions["publisher"]
    dead = publisher._link

    def bug() -> None:
        raise RuntimeError("a bug in a callback of the I/O thread")

    dead._ioloop.add_callback_threadsafe(bug)
    dead._thread.join(timeout=5)
    assert not dead.alive
    response = client.post("/api/billing", json=ORDER)
    assert response.status_code == 200, response.data
    assert publisher._link is not dead and publisher._link.alive
    assert amqp.queue_declare(config.rabbitmq.queue, passive=True).method.message_count == 2
