"""From rounds of figures to the one table: median [min..max], the same-round baseline, the ratio, the target."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Round = dict[str, float]


@dataclass(frozen=True)
class Row:
    scenario: str
    figure: str
    value: Callable[[Round], float]
    baseline_name: str = ""
    baseline: Callable[[Round], float] | None = None
    # Ratio of one round's figures (value against its baseline, oriented so that higher is better).
    ratio: Callable[[Round], float] | None = None
    target: str = ""
    met: Callable[[float, float], bool] | None = None  # (median value, median ratio) -> met?
    unit: str = ""


def key(name: str) -> Callable[[Round], float]:
    return lambda r: r[name]


def pair(a: str, b: str) -> Callable[[Round], tuple[float, float]]:
    return lambda r: (r[a], r[b])


# The timeouts the slow-client rows are held to, filled in from the rounds by summarize().
ROUND_TIMEOUT: dict[str, float] = {}

ROWS = [
    Row("gateway proxy", "GET /api/movies/<id> via gateway", key("get_gateway_rps"), "direct to inventory",
        key("get_direct_rps"), lambda r: r["get_gateway_rps"] / r["get_direct_rps"], ">= 0.75x direct",
        lambda v, q: q >= 0.75, "req/s"),
    Row("gateway proxy", "  latency via gateway p50 / p99", pair("get_gateway_p50", "get_gateway_p99"),
        "direct p50 / p99", pair("get_direct_p50", "get_direct_p99"), unit="ms"),
    Row("gateway proxy", "  CPU per GET: front / application", pair("get_gateway_cpu_front_ms", "get_gateway_cpu_app_ms"),
        "inventory behind it", key("get_gateway_cpu_inventory_ms"), unit="ms"),
    Row("gateway proxy", "  via the application (writes' path)", key("get_application_rps"), "direct to inventory",
        key("get_direct_rps"), lambda r: r["get_application_rps"] / r["get_direct_rps"], "(report)", unit="req/s"),
    Row("gateway proxy", "  its CPU per GET: front / application",
        pair("get_application_cpu_front_ms", "get_application_cpu_app_ms"), "inventory behind it",
        key("get_application_cpu_inventory_ms"), unit="ms"),
    Row("gateway proxy", "  nginx (proxy_pass, keepalive)", key("get_nginx_rps"), "direct to inventory",
        key("get_direct_rps"), lambda r: r["get_nginx_rps"] / r["get_direct_rps"], "(reference ~0.88x)", unit="req/s"),
    Row("slow clients", "GET p99 beside 650 slow connections", key("slow_get_beside_p99"), "p99 without them",
        key("slow_get_alone_p99"), lambda r: r["slow_get_alone_p99"] / r["slow_get_beside_p99"],
        "p99 <= 2x without (>= 0.5x)", lambda v, q: q >= 0.5, "ms"),
    Row("slow clients", "  GET rate beside / without them", pair("slow_get_beside_rps", "slow_get_alone_rps"),
        unit="req/s"),
    *(Row("slow clients", f"  {label}: closed after at most", key(f"slow_{kind}_closed_max_s"), "its timeout",
          key(f"slow_{kind}_timeout_s"), target="<= timeout + 1 s",
          met=(lambda k: lambda v, q: v <= ROUND_TIMEOUT[k] + 1)(kind), unit="s")
      for kind, label in (("one_byte", "500 one-byte"), ("headers", "100 header trickles"),
                          ("bodies", "50 body trickles, from their last byte"))),
    # An order takes the application's path: against a GET on the same path (the baseline of issue 7, when every
    # GET took it), and against the read path as it is now, straight from the front to the inventory.
    Row("billing ingest", "confirmed POST /api/billing", key("ingest_rps"), "GET via the application",
        key("get_application_rps"), lambda r: r["ingest_rps"] / r["get_application_rps"],
        ">= 0.9x GET proxy", lambda v, q: q >= 0.9, "orders/s"),
    Row("billing ingest", "  vs a GET via the gateway (read path)", key("ingest_rps"), "GET via gateway",
        key("get_gateway_rps"), lambda r: r["ingest_rps"] / r["get_gateway_rps"], "(report)", unit="orders/s"),
    Row("billing ingest", "  vs raw pika, 4 conns, confirms", key("ingest_rps"), "raw pika",
        key("pika_rps"), lambda r: r["ingest_rps"] / r["pika_rps"], "(report)", unit="orders/s"),
    Row("billing ingest", "  latency p50 / p99", pair("ingest_p50", "ingest_p99"), "raw pika p50 / p99",
        pair("pika_p50", "pika_p99"), unit="ms"),
    Row("billing drain", "billing_app on a 50,000 backlog", key("drain_rps"), "one message per commit",
        key("baseline_drain_rps"), lambda r: r["drain_rps"] / r["baseline_drain_rps"], ">= 10x, 0 lost, 0 dup",
        lambda v, q: q >= 10, "orders/s"),
    Row("billing drain", "  two consumers (TOPOLOGY=ha's), same broker and db", key("drain_two_consumers_rps"),
        "one consumer", key("drain_rps"), lambda r: r["drain_two_consumers_rps"] / r["drain_rps"], "(report)",
        unit="orders/s"),
    Row("billing drain", "  lost / duplicates (all rounds)", pair("drain_lost", "drain_duplicates"), unit="rows"),
    Row("inventory instances", "GET /api/movies/<id>, two behind HAProxy", key("inventories_balanced_two_rps"),
        "HAProxy over one", key("inventories_balanced_one_rps"),
        lambda r: r["inventories_balanced_two_rps"] / r["inventories_balanced_one_rps"], "(report)", unit="req/s"),
    Row("inventory instances", "  HAProxy over one", key("inventories_balanced_one_rps"), "one instance direct",
        key("inventories_one_rps"), lambda r: r["inventories_balanced_one_rps"] / r["inventories_one_rps"], "(report)",
        unit="req/s"),
    Row("end to end", "200 -> row in orders_db p50 / p99", pair("e2e_p50", "e2e_p99"), "sent at (orders/s, half max ingest)",
        key("e2e_rate"), target="p99 <= 100 ms", met=lambda v, q: v[1] <= 100, unit="ms"),
]
for name, label in (("search_rare", "?title=axolotl (66 rows)"), ("search_common", "?title=love (2% of rows)"),
                    ("last_page", "last page (limit=100)")):
    ROWS.append(Row("inventory at scale", f"{label} p50 / p99", pair(f"{name}_p50", f"{name}_p99"),
                    "seq scan in the db", key(f"{name}_scan_ms"),
                    (lambda n: lambda r: r[f"{n}_scan_ms"] / r[f"{n}_p50"])(name), ">= 30x scan; p50 <= 15 ms",
                    lambda v, q: q >= 30 and v[0] <= 15, "ms"))
ROWS.append(Row("inventory at scale", '?title=the the: 400 p50 / p99', pair("search_broad_p50", "search_broad_p99"),
                "the database running it", key("search_broad_db_ms"), target="refused, p99 <= 300 ms",
                met=lambda v, q: v[1] <= 300, unit="ms"))
ROWS.append(Row("whole list", "GET /api/movies, 1M movies via gateway", key("list_mbps"),
                "PostgreSQL COPY of the same JSON", key("list_copy_mbps"),
                lambda r: r["list_mbps"] / r["list_copy_mbps"], ">= 0.3x COPY", lambda v, q: q >= 0.3, "MB/s"))
ROWS.append(Row("whole list", "  seconds via gateway / COPY", key("list_s"), "COPY seconds", key("list_copy_s"),
                unit="s"))
ROWS.append(Row("whole list", "  peak RSS growth gateway / inventory", pair("list_gateway_rss_mb",
                "list_inventory_rss_mb"), target="< 50 MB each",
                met=lambda v, q: v[0] < 50 and v[1] < 50, unit="MB"))
ROWS.append(Row("inventory direct", "GET /api/movies/<id> direct", key("get_direct_rps"), "minimal Flask+SQLAlchemy",
                key("get_minimal_rps"), lambda r: r["get_direct_rps"] / r["get_minimal_rps"], ">= 1.0x",
                lambda v, q: q >= 1.0, "req/s"))


def _spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _fmt(x: float) -> str:
    if x != x:  # NaN
        return "nan"
    if x == int(x) and abs(x) < 100:  # counts (lost, duplicates) read as counts
        return str(int(x))
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _fmt_spread(values: list[float], suffix: str = "") -> str:
    med, lo, hi = _spread(values)
    return f"{_fmt(med)}{suffix} [{_fmt(lo)}..{_fmt(hi)}]"


def _fmt_value(rounds: list[Round], fn: Callable[[Round], object]) -> tuple[str, object]:
    values = [fn(r) for r in rounds]
    if isinstance(values[0], tuple):
        parts = list(zip(*values))
        return " / ".join(_fmt_spread(list(p)) for p in parts), tuple(statistics.median(p) for p in parts)
    return _fmt_spread(values), statistics.median(values)


def summarize(rounds: list[Round]) -> list[dict]:
    summary = []
    for kind in ("one_byte", "headers", "bodies"):
        ROUND_TIMEOUT[kind] = max(r[f"slow_{kind}_timeout_s"] for r in rounds)
    for row in ROWS:
        text, median = _fmt_value(rounds, row.value)
        entry = {"scenario": row.scenario, "figure": row.figure, "unit": row.unit, "value": text,
                 "value_median": median, "values": [row.value(r) for r in rounds],
                 "baseline_name": row.baseline_name, "target": row.target}
        if row.baseline is not None:
            entry["baseline"], entry["baseline_median"] = _fmt_value(rounds, row.baseline)
        if row.ratio is not None:
            ratios = [row.ratio(r) for r in rounds]
            entry.update(ratio=_fmt_spread(ratios, "x"), ratio_median=statistics.median(ratios), ratios=ratios)
        if row.met is not None:
            entry["met"] = bool(row.met(median, entry.get("ratio_median", float("nan"))))
        summary.append(entry)
    return summary


def table(summary: list[dict]) -> str:
    headers = ["scenario", "figure", "unit", "value: median [min..max]", "baseline (same round)",
               "baseline value", "ratio", "target", "met"]
    lines = [[e["scenario"], e["figure"], e["unit"], e["value"], e["baseline_name"], e.get("baseline", ""),
              e.get("ratio", ""), e["target"], {True: "yes", False: "MISSED"}.get(e.get("met"), "")] for e in summary]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *lines)]
    out = [" | ".join(h.ljust(w) for h, w in zip(headers, widths)), "-+-".join("-" * w for w in widths)]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def chart(summary: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rated = [e for e in summary if "ratios" in e]
    latency = [e for e in summary if e["unit"] == "ms" and isinstance(e["value_median"], tuple)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 6.5))
    labels = [f"{e['scenario']}: {e['figure'].strip()}\nvs {e['baseline_name']}" for e in rated]
    medians = [e["ratio_median"] for e in rated]
    errors = [[m - min(e["ratios"]) for m, e in zip(medians, rated)], [max(e["ratios"]) - m for m, e in zip(medians, rated)]]
    colors = ["tab:green" if e.get("met") else ("tab:red" if e.get("met") is False else "tab:gray") for e in rated]
    y = range(len(rated))
    ax1.barh(list(y), medians, xerr=errors, color=colors, capsize=3)
    ax1.set_yticks(list(y), labels, fontsize=7)
    ax1.set_xscale("log")
    ax1.axvline(1.0, color="black", linewidth=0.8)
    ax1.invert_yaxis()
    ax1.set_xlabel("ratio to the same-round baseline (median, min..max; green = target met)")
    ax2_labels = [e["figure"].strip().replace(" p50 / p99", "") for e in latency]
    p50 = [e["value_median"][0] for e in latency]
    p99 = [e["value_median"][1] for e in latency]
    y2 = range(len(latency))
    ax2.barh([i - 0.2 for i in y2], p50, height=0.4, label="p50")
    ax2.barh([i + 0.2 for i in y2], p99, height=0.4, label="p99")
    ax2.set_yticks(list(y2), ax2_labels, fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlabel("milliseconds (median of rounds)")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
