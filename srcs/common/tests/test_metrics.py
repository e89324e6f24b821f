"""Metrics: what a request is counted under, the /metrics endpoint, and the sums across gunicorn's workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from crud_common.metrics import HttpMetrics, MetricsEndpoint, counter_by
from crud_common.testing import free_port, http_status, wait_for


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read().decode()


def requests_counted(metrics: HttpMetrics, route: str, method: str, status: int) -> float:
    return metrics.registry.get_sample_value(
        "http_requests_total", {"route": route, "method": method, "status": str(status)}) or 0.0


def test_a_request_is_counted_under_its_route_pattern_method_and_status():
    metrics = HttpMetrics()
    metrics.observe("/api/movies/<id>", "GET", 200, 0.003)
    metrics.observe("/api/movies/<id>", "GET", 200, 0.2)
    assert requests_counted(metrics, "/api/movies/<id>", "GET", 200) == 2
    buckets = {"route": "/api/movies/<id>", "method": "GET"}
    assert metrics.registry.get_sample_value("http_request_duration_seconds_count", buckets) == 2
    assert metrics.registry.get_sample_value("http_request_duration_seconds_bucket", {**buckets, "le": "0.005"}) == 1


def test_a_route_with_a_trailing_slash_is_the_same_route():
    metrics = HttpMetrics()
    metrics.observe("/api/movies/", "POST", 200, 0.01)
    metrics.observe("/api/movies", "POST", 200, 0.01)
    assert requests_counted(metrics, "/api/movies", "POST", 200) == 2


def test_unknown_paths_and_methods_share_one_label_value_each():
    # A label per path or per made-up method would let any client create series without end.
    metrics = HttpMetrics()
    metrics.observe(None, "BREW", 405, 0.001)
    metrics.observe(None, "PROPFIND", 405, 0.001)
    assert requests_counted(metrics, "unmatched", "other", 405) == 2


def test_the_app_counts_each_request_under_its_flask_rule(app):
    client = app.test_client()
    assert client.post("/echo", json={"a": 1}).status_code == 200
    assert client.post("/echo", data="{", content_type="application/json").status_code == 400
    assert client.get("/nowhere/42").status_code == 404
    metrics = app.extensions["metrics"]
    assert requests_counted(metrics, "/echo", "POST", 200) == 1
    assert requests_counted(metrics, "/echo", "POST", 400) == 1
    assert requests_counted(metrics, "unmatched", "GET", 404) == 1


def test_a_counter_by_kind_has_every_kind_at_zero_before_the_first_event():
    registry = CollectorRegistry()
    failures = counter_by(registry, "failures", "Failures, by kind.", "kind", ("slow", "down"))
    assert registry.get_sample_value("failures_total", {"kind": "down"}) == 0
    failures.labels("slow").inc()
    assert registry.get_sample_value("failures_total", {"kind": "slow"}) == 1


@pytest.fixture
def endpoint():
    registry = CollectorRegistry()
    Counter("widgets", "Widgets made.", registry=registry).inc(3)
    endpoint = MetricsEndpoint("127.0.0.1", free_port(), lambda: registry)
    endpoint.start()
    yield f"http://127.0.0.1:{endpoint.port}"
    endpoint.stop()


def test_the_endpoint_serves_the_registry_in_the_prometheus_text_format(endpoint):
    status, headers, text = fetch(f"{endpoint}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "widgets_total 3.0" in text


def test_the_endpoint_answers_anything_else_in_the_json_error_shape(endpoint):
    status, headers, text = fetch(f"{endpoint}/")
    assert (status, json.loads(text)["error"]) == (404, "not_found")
    assert json.loads(text)["request_id"] == headers["X-Request-ID"]
    status, headers, text = fetch(f"{endpoint}/metrics", "POST")
    assert (status, json.loads(text)["error"], headers["Allow"]) == (405, "method_not_allowed", "GET, HEAD")


SERVER = """
import os, sys
from pathlib import Path
from crud_common.logs import configure_logging
from crud_common.metrics import HttpMetrics
from crud_common.serving import serve
from crud_common.settings import HttpServerSettings, MetricsSettings

def load_app():
    metrics = HttpMetrics()  # in the worker, after the fork, as a service's create_app does

    def app(environ, start_response):
        metrics.observe("/pid", "GET", 200, 0.001)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return [str(os.getpid()).encode()]

    return app

configure_logging()
metrics_dir = Path(sys.argv[3]) if len(sys.argv) > 3 else None
serve(HttpServerSettings(host="127.0.0.1", port=int(sys.argv[1]), workers=2, threads=2), load_app,
      name="test_metrics", keepalive=0, metrics=MetricsSettings(host="127.0.0.1", port=int(sys.argv[2])),
      metrics_dir=metrics_dir)
"""


def test_the_master_serves_the_sum_of_every_worker(tmp_path):
    port, metrics_port = free_port(), free_port()
    environ = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(metrics_port)], env=environ,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("the test server to answer", lambda: http_status(f"http://127.0.0.1:{port}/") == 200)
        wait_for("its metrics", lambda: http_status(f"http://127.0.0.1:{metrics_port}/metrics") == 200)
        answered_by: list[str] = []
        while len(set(answered_by)) < 2 and len(answered_by) < 500:
            answered_by.append(fetch(f"http://127.0.0.1:{port}/")[2])
        assert len(set(answered_by)) == 2, "both workers answered"
        scraped = fetch(f"http://127.0.0.1:{metrics_port}/metrics")[2]
        counted = re.search(r'^http_requests_total\{method="GET",route="/pid",status="200"\} (\S+)$', scraped, re.M)
        # The readiness probe above was counted too.
        assert counted and float(counted.group(1)) == len(answered_by) + 1
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


# A process beside the server, as the gateway's front is: it counts in the server's directory, one line of its
# standard input at a time ("3": three requests), and says "counted" each time.
BESIDE = """
import sys
from pathlib import Path
from crud_common.metrics import HttpMetrics, count_in_files_as

count_in_files_as(Path(sys.argv[1]), "beside")
metrics = HttpMetrics()
for line in sys.stdin:
    for _ in range(int(line)):
        metrics.observe("/pid", "GET", 200, 0.001)
    print("counted", flush=True)
"""


class Beside:
    def __init__(self, directory, environ) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", BESIDE, str(directory)], env=environ, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def count(self, times: int) -> None:
        self.process.stdin.write(f"{times}\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "counted\n"

    def stop(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=10) == 0


def scraped_count(metrics_port: int) -> float:
    scraped = fetch(f"http://127.0.0.1:{metrics_port}/metrics")[2]
    counted = re.search(r'^http_requests_total\{method="GET",route="/pid",status="200"\} (\S+)$', scraped, re.M)
    assert counted, scraped
    return float(counted.group(1))


def start_server(directory, environ) -> tuple[subprocess.Popen, int, float]:
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(metrics_port), str(directory)],
                               env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("the test server to answer", lambda: http_status(f"http://127.0.0.1:{port}/") == 200)
    wait_for("its metrics", lambda: http_status(f"http://127.0.0.1:{metrics_port}/metrics") == 200)
    return process, metrics_port, scraped_count(metrics_port)


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    assert process.wait(timeout=30) == 0


def test_a_process_beside_the_master_adds_its_counts_and_starts_again_with_the_master(tmp_path):
    directory = tmp_path / "metrics"
    environ = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    server, metrics_port, own = start_server(directory, environ)
    beside = Beside(directory, environ)
    try:
        assert own >= 1  # the readiness probe, counted by a worker
        beside.count(3)
        assert scraped_count(metrics_port) == own + 3
        # The process beside started again: its counts go on from where they were.
        beside.stop()
        beside = Beside(directory, environ)
        beside.count(2)
        assert scraped_count(metrics_port) == own + 5
        # The master started again: its workers' counts start from 0, and so do those of the process beside
        # (still running), at its next count: the whole series falls back at once, as one reset.
        stop_server(server)
        server, metrics_port, own = start_server(directory, environ)
        beside.count(1)
        assert scraped_count(metrics_port) == own + 1
    finally:
        beside.stop()
        stop_server(server)
