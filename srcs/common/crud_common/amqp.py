"""How both sides of billing_queue reach the broker: one pika ConnectionParameters per node of RABBITMQ_HOST,
each client starting at a node of its own, so that the gateway's workers and the consumers spread over a
cluster, and each moving on to the next node when one is away (pika tries a sequence of parameters in order)."""

from __future__ import annotations

import random
from typing import Any

import pika

from .settings import RabbitSettings


def node_parameters(rabbit: RabbitSettings, *, first: int | None = None, **options: Any) -> list[pika.ConnectionParameters]:
    """Every node's parameters (the vhost and credentials of `rabbit`, and `options`: timeouts, heartbeat, the
    connection's name), starting with the node at index `first` (a random one when None) and then in turn."""
    nodes = rabbit.nodes
    start = random.randrange(len(nodes)) if first is None else first % len(nodes)
    credentials = pika.PlainCredentials(rabbit.user, rabbit.password.get_secret_value())
    return [
        pika.ConnectionParameters(host=host, port=port, virtual_host=rabbit.vhost, credentials=credentials, **options)
        for host, port in nodes[start:] + nodes[:start]
    ]


def node_after(rabbit: RabbitSettings, host: str, port: int) -> int:
    """The index of the node that follows (host, port) in RABBITMQ_HOST: where to start once that one is gone."""
    nodes = rabbit.nodes
    return (nodes.index((host, port)) + 1) % len(nodes) if (host, port) in nodes else 0
