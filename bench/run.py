"""make bench: every scenario of issue 7, side by side with its baseline, for N rounds; one table at the end.

Run by scripts/bench.sh, which brings up the bench platform instance and exports its settings. Writes
bench/results/results.json and bench/results/chart.png. Exits non-zero when an answer was wrong (a status, a count):
a fast wrong answer never counts. A missed target is reported in the table, not as a failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import report
import scenarios
from infra import BenchError, Settings, ensure_movies_dataset, pm2_status

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("bench")


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    memory_gib = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB, {platform.platform()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    # pika narrates every connection at INFO; the bench reports its own progress.
    logging.getLogger("pika").setLevel(logging.WARNING)
    RESULTS.mkdir(exist_ok=True)
    started = time.monotonic()
    settings = Settings.from_env()
    for app in ("api_gateway", "inventory_app", "billing_app"):
        if pm2_status(settings, app) != "online":
            raise BenchError(f"{app} is not online in the bench PM2 home {settings.pm2_home}")
    load_s = ensure_movies_dataset(settings)
    rounds: list[dict[str, float]] = []
    with ExitStack() as stack:
        scenarios.start_side_processes(settings, stack, RESULTS / "logs")
        scenarios.check_get_answers(settings)
        scenarios.check_search_answers(settings)
        scenarios.warm_up(settings)
        for round_no in range(args.rounds):
            log.info("round %d of %d", round_no + 1, args.rounds)
            figures: dict[str, float] = {}
            figures.update(scenarios.http_get(settings, round_no))
            figures.update(scenarios.slow_clients(settings, round_no))
            figures.update(scenarios.inventory_search(settings, round_no))
            figures.update(scenarios.whole_list(settings, round_no))
            figures.update(scenarios.billing_ingest(settings, round_no, figures))
            figures.update(scenarios.end_to_end(settings, round_no, figures["ingest_rps"]))
            figures.update(scenarios.billing_drain(settings, round_no, RESULTS / "logs"))
            figures.update(scenarios.inventory_instances(settings, round_no, RESULTS / "logs"))
            rounds.append(figures)
    summary = report.summarize(rounds)
    elapsed = time.monotonic() - started
    title = f"crud-master make bench: {args.rounds} rounds, {machine()}"
    (RESULTS / "results.json").write_text(json.dumps({
        "machine": machine(), "rounds": rounds, "summary": summary, "elapsed_s": elapsed, "dataset_load_s": load_s,
        "notes": {
            "drain_backlog": scenarios.DRAIN_BACKLOG, "baseline_backlog": scenarios.BASELINE_BACKLOG,
        },
    }, indent=2, default=str))
    report.chart(summary, RESULTS / "chart.png", title)
    print()
    print(title)
    print(report.table(summary))
    print(f"\nbilling drain: billing_app drains a {scenarios.DRAIN_BACKLOG:,}-order backlog; the one-per-commit "
          f"baseline a {scenarios.BASELINE_BACKLOG:,}-order backlog (the full 50,000 would take minutes at its rate); "
          "both rates are orders/s from the first stored row to the last.")
    print(f"end to end: the time a watcher polling orders_db every {scenarios.E2E_POLL_S * 1000:.0f} ms first saw the "
          "committed row, minus the time the client got its 200.")
    print(f"results: {RESULTS / 'results.json'}  chart: {RESULTS / 'chart.png'}  ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        logging.getLogger("bench").error("BENCH FAILED: %s", exc)
        sys.exit(1)
