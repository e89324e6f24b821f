"""Fixtures of the library's own suite: a small Flask app built the way the services build theirs, and the test
vhost of the real RabbitMQ (RABBITMQ_TEST_VHOST), for the queue declaration."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest
from flask import Flask, jsonify
from pydantic import BaseModel, ConfigDict

from crud_common.errors import ApiError
from crud_common.metrics import HttpMetrics
from crud_common.settings import RabbitSettings, environment, load_parts
from crud_common.webapp import (
    init_request_logging, json_body, note, query, refuse_query_parameters, register_error_handlers,
)


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = 10


class Teapot(Exception):
    pass


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1024
    app.url_map.merge_slashes = False
    metrics = HttpMetrics()
    app.extensions["metrics"] = metrics
    init_request_logging(app, "test.access", metrics, upstream="-")
    register_error_handlers(app, {Teapot: lambda exc: ApiError(503, "the teapot is busy")})

    @app.post("/echo")
    def echo():
        note("upstream", "echo")
        return jsonify(json_body())

    @app.get("/page")
    def page():
        return jsonify(query(Page).model_dump())

    @app.delete("/everything")
    def everything():
        refuse_query_parameters()
        return jsonify({"deleted": 0})

    @app.get("/teapot")
    def teapot():
        raise Teapot()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    return app


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def rabbit() -> RabbitSettings:
    environ = environment()
    environ = {**environ, "RABBITMQ_VHOST": environ["RABBITMQ_TEST_VHOST"]}
    return load_parts({"rabbit": (RabbitSettings, "RABBITMQ_")}, environ)["rabbit"]


@pytest.fixture
def channel(rabbit: RabbitSettings) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(rabbit_parameters(rabbit))
    yield connection.channel()
    if connection.is_open:
        connection.close()


def rabbit_parameters(rabbit: RabbitSettings) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host=rabbit.host, port=rabbit.port, virtual_host=rabbit.vhost,
        credentials=pika.PlainCredentials(rabbit.user, rabbit.password.get_secret_value()),
    )
