"""Baseline of the "billing drain" scenario: the consumer a first version would be, one message per commit.

For each delivery: parse the JSON order, INSERT one row (idempotent on message_id), COMMIT, ack. Same broker,
same queue (declared passively, so its arguments are never contradicted), same table, same durability
(synchronous commit, ack after commit) as billing_app; only the batching differs. Runs until SIGTERM.

    RABBITMQ_*=... BILLING_DB_*=... bench/.venv/bin/python bench/baseline_consumer.py
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

import pika
import psycopg2

log = logging.getLogger("baseline_consumer")

INSERT = (
    "INSERT INTO orders (user_id, number_of_items, total_amount, message_id) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (message_id) DO NOTHING"
)
# Deliveries in flight: enough that the broker round trip is never what the baseline waits on.
PREFETCH = 100


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    env = os.environ
    db = psycopg2.connect(
        host=env["BILLING_DB_HOST"], port=env["BILLING_DB_PORT"], dbname=env["BILLING_DB_NAME"],
        user=env["BILLING_DB_USER"], password=env["BILLING_DB_PASSWORD"], application_name="bench-baseline-consumer",
    )
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        host=env["RABBITMQ_HOST"], port=int(env["RABBITMQ_PORT"]), virtual_host=env["RABBITMQ_VHOST"],
        credentials=pika.PlainCredentials(env["RABBITMQ_USER"], env["RABBITMQ_PASSWORD"]),
    ))
    channel = connection.channel()
    queue = env["RABBITMQ_QUEUE"]
    channel.queue_declare(queue, passive=True)
    channel.basic_qos(prefetch_count=PREFETCH)

    def on_message(ch, method, properties, body: bytes) -> None:
        order = json.loads(body)
        with db.cursor() as cursor:
            cursor.execute(INSERT, (int(order["user_id"]), int(order["number_of_items"]),
                                    str(order["total_amount"]), properties.message_id))
        db.commit()
        ch.basic_ack(method.delivery_tag)

    signal.signal(signal.SIGTERM, lambda *_: connection.add_callback_threadsafe(channel.stop_consuming))
    channel.basic_consume(queue, on_message)
    log.info("consuming %s one message per commit", queue)
    channel.start_consuming()
    connection.close()
    db.close()


if __name__ == "__main__":
    main()
