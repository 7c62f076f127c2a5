"""The table, the issue's targets next to the measured ratios, machine facts and the JSON file."""

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from .workloads import WORKLOADS, Row

# (label, numerator (system, workload), denominator (system, workload) or None, kind, target)
# kind "ratio": numerator msgs/s over denominator msgs/s >= target ("info": the same ratio, no target);
# "p99": p99_ms <= target;
# "rate": msgs/s >= target; "rss_idle"/"rss_ratio": from the memory row's extra.
TARGETS = [
    (
        "(1) memory produce vs Redis pipelined (redis-py)",
        ("myqueue-mem/send_batch", 1),
        ("redis/redis-py", 1),
        "ratio",
        3.0,
    ),
    (
        "(1) memory produce vs NATS JetStream async publish",
        ("myqueue-mem/send_batch", 1),
        ("nats-mem/nats-py", 1),
        "ratio",
        10.0,
    ),
    (
        "(1) stretch: memory produce vs redis-benchmark native",
        ("myqueue-mem/send_batch", 1),
        ("redis/redis-benchmark", 1),
        "ratio",
        1.0,
    ),
    (
        "(1) raw HTTP batches vs Redis pipelined (redis-py)",
        ("myqueue-mem/raw-http", 1),
        ("redis/redis-py", 1),
        "ratio",
        3.0,
    ),
    (
        "(2) consume catch-up (Consumer.poll) vs Redis XREAD COUNT 1000",
        ("myqueue-mem/Consumer.poll", 2),
        ("redis/redis-py", 2),
        "ratio",
        1.0,
    ),
    ("(3) e2e p99 at 5,000 msgs/s (ms)", ("myqueue-mem/send+poll", 3), None, "p99", 5.0),
    (
        "(5) persistent produce vs raw PostgreSQL, same layout",
        ("myqueue-pg/send_batch", 5),
        ("postgres/blob-row", 5),
        "ratio",
        0.5,
    ),
    (
        "(5) persistent produce vs Redis appendfsync always",
        ("myqueue-pg/send_batch", 5),
        ("redis-aof-always/redis-py", 5),
        "ratio",
        2.0,
    ),
    (
        "(6) seed per-message produce, memory, 1 client (msgs/s)",
        ("myqueue-mem/seed-http", 6),
        None,
        "rate",
        1000.0,
    ),
    (
        "(6) seed per-message produce, PostgreSQL, 1 client (msgs/s)",
        ("myqueue-pg/seed-http", 6),
        None,
        "rate",
        1000.0,
    ),
    ("(6) the same, memory, 4 clients (msgs/s)", ("myqueue-mem/seed-http x4", 6), None, "rate", 1000.0),
    ("(6) the same, PostgreSQL, 4 clients (msgs/s)", ("myqueue-pg/seed-http x4", 6), None, "rate", 1000.0),
    *(
        (f"(13) {what} ({label})", (f"{system}/{num}", w), (f"{system}/{den}", w), "ratio", 0.85)
        for system, label, produce_w in (("myqueue-mem", "memory", 1), ("myqueue-pg", "PostgreSQL", 5))
        for what, num, den, w in (
            ("v2 keyless vs v1, raw HTTP produce", "raw-http v2", "raw-http", produce_w),
            (
                "v2 +keys vs v1 of as many bytes, raw HTTP produce",
                "raw-http+keys",
                "raw-http same-bytes",
                produce_w,
            ),
            (
                "send_batch +keys vs keyless of as many bytes",
                "send_batch+keys",
                "send_batch same-bytes",
                produce_w,
            ),
            ("Consumer.poll v2 keyless vs v1", "Consumer.poll v2", "Consumer.poll", 2),
            (
                "Consumer.poll +keys vs v1 of as many bytes",
                "Consumer.poll+keys",
                "Consumer.poll same-bytes",
                2,
            ),
            (
                "strict: send_batch +keys vs keyless (74 B more a record)",
                "send_batch+keys",
                "send_batch",
                produce_w,
            ),
            (
                "strict: Consumer.poll +keys vs v1 keyless (74 B more a record)",
                "Consumer.poll+keys",
                "Consumer.poll",
                2,
            ),
        )
    ),
    (
        "(13) for reference, Kafka +keys vs keyless, produce",
        ("kafka/confluent-kafka+keys", 1),
        ("kafka/confluent-kafka", 1),
        "info",
        0.0,
    ),
    (
        "(13) for reference, Kafka +keys vs keyless, consume",
        ("kafka/confluent-kafka+keys", 2),
        ("kafka/confluent-kafka", 2),
        "info",
        0.0,
    ),
    ("(7) idle broker RSS (MB)", ("myqueue-mem", 7), None, "rss_idle", 60.0),
    ("(7) 1 M in-memory msgs: RSS growth / payload bytes", ("myqueue-mem", 7), None, "rss_ratio", 2.0),
]


# Issue 17's durability-matched comparison: each class a block of (system/client, workload, API).
# The per-message API is the call an application makes per record (its client may batch behind it:
# Producer.send, confluent-kafka produce(), nats-py publish_async; redis-py has no such call, so a
# per-message XADD waits for its reply). The batch API hands the client a batch (send_batch, a
# redis-py pipeline); NATS and Kafka have none, so their per-message rows stand in the batch column.
DURABILITY_CLASSES = {
    "a": "volatile (lost with the process)",
    "b": "survives a process crash, not power loss",
    "c": "acknowledged means on disk",
}
DURABILITY = [
    ("a", "myqueue-mem/send", 1, "per-message"),
    ("a", "myqueue-mem/send_batch", 1, "batch"),
    ("a", "redis/xadd", 1, "per-message"),
    ("a", "redis/redis-py", 1, "batch"),
    ("a", "nats-mem/nats-py", 1, "per-message"),
    ("b", "myqueue-pg-async/send", 5, "per-message"),
    ("b", "myqueue-pg-async/send_batch", 5, "batch"),
    ("b", "redis-aof-everysec/xadd", 5, "per-message"),
    ("b", "redis-aof-everysec/redis-py", 5, "batch"),
    ("b", "nats-file/nats-py", 1, "per-message"),
    ("b", "kafka/confluent-kafka", 1, "per-message"),
    ("c", "myqueue-pg/send", 5, "per-message"),
    ("c", "myqueue-pg/send_batch", 5, "batch"),
    ("c", "redis-aof-always/xadd", 5, "per-message"),
    ("c", "redis-aof-always/redis-py", 5, "batch"),
    ("c", "nats-file-sync-always/nats-py", 5, "per-message"),
    ("c", "kafka-flush-1/confluent-kafka", 5, "per-message"),
]
DURABILITY_GOALS = {"per-message": 1.5, "batch": 3.0}


def _durability_targets() -> list[tuple]:
    """Per class and API: myqueue's row over the best peer row of the class (for the batch API every
    peer row counts, a per-message one included), as ("best", ...) targets."""
    out = []
    for cls, ours, workload, api in DURABILITY:
        if not ours.startswith("myqueue"):
            continue
        peers = [
            (s, w)
            for c, s, w, a in DURABILITY
            if c == cls and not s.startswith("myqueue") and (api == "batch" or a == api)
        ]
        label = f"(17) class {cls}, {api} API: {ours} vs the best peer"
        out.append((label, (ours, workload), peers, "best", DURABILITY_GOALS[api]))
    return out


DURABILITY_TARGETS = _durability_targets()  # derived once from the table above


def durability_table(rows: list[Row]) -> str:
    """The produce rows of each durability class, one block a class, fastest first."""
    lines = []
    for cls, meaning in DURABILITY_CLASSES.items():
        lines.append(f"class ({cls}) {meaning}")
        found = []
        for c, system, workload, api in DURABILITY:
            if c == cls:
                row = _find(rows, system, workload)
                found.append((row.msgs_per_s if row and row.msgs_per_s else -1.0, system, api, row))
        for rate, system, api, row in sorted(found, key=lambda f: -f[0]):
            cpu = _num(row.extra.get("cpu_us_per_msg"), 2) if row else "-"
            shown = _num(rate) if rate >= 0 else "not measured"
            notes = row.notes if row else ""
            lines.append(f"  {system:<34} {api:<12} {shown:>11} msgs/s  cpu µs {cpu:>6}  {notes}")
    return "\n".join(lines)


def _find(rows: list[Row], system: str, workload: int) -> Row | None:
    return next((r for r in rows if r.system == system and r.workload == WORKLOADS[workload]), None)


def _met(kind: str, value: float, goal: float) -> bool | None:
    if kind == "info":
        return None
    return value <= goal if kind in ("p99", "rss_idle", "rss_ratio") else value >= goal


def targets(rows: list[Row]) -> list[dict]:
    out = []
    for label, (num_sys, num_w), den, kind, target in TARGETS + DURABILITY_TARGETS:
        num = _find(rows, num_sys, num_w)
        value, ok = None, None
        if kind == "best":
            rates = [r.msgs_per_s for r in (_find(rows, *peer) for peer in den) if r and r.msgs_per_s]
            if num and num.msgs_per_s and rates:
                value = num.msgs_per_s / max(rates)
        elif kind in ("ratio", "info"):
            d = _find(rows, *den)
            if num and d and num.msgs_per_s and d.msgs_per_s:
                value = num.msgs_per_s / d.msgs_per_s
        elif kind == "p99" and num and num.p99_ms is not None and not math.isnan(num.p99_ms):
            value = num.p99_ms
        elif kind == "rate" and num and num.msgs_per_s:
            value = num.msgs_per_s
        elif kind == "rss_idle" and num:
            value = num.extra.get("rss_idle_mb")
        elif kind == "rss_ratio" and num:
            value = num.extra.get("loaded_over_payload")
        if value is not None:
            ok = _met(kind, value, target)
        out.append({"target": label, "measured": value, "goal": target, "kind": kind, "met": ok})
    return out


def median_rows(rounds: list[list[Row]]) -> list[Row]:
    """One row per (system, workload) of the first round: the round whose rate is the median
    (the lower one of an even count), with every round's rate in ``extra["rounds_msgs_per_s"]``."""
    if len(rounds) == 1:
        return rounds[0]
    out = []
    for first in rounds[0]:
        same = [
            r for rows in rounds for r in rows if (r.system, r.workload) == (first.system, first.workload)
        ]
        rated = [r for r in same if r.msgs_per_s]
        if not rated:
            out.append(first)
            continue
        median = statistics.median_low(r.msgs_per_s for r in rated)
        chosen = next(r for r in rated if r.msgs_per_s == median)
        chosen.extra["rounds_msgs_per_s"] = [round(r.msgs_per_s or 0.0) for r in same]
        out.append(chosen)
    return out


def median_targets(rounds: list[list[Row]]) -> list[dict]:
    """The targets of each round, then per target the median of its rounds' values: a ratio is
    taken between rows of the same round, which ran side by side on the same machine state."""
    per_round = [targets(rows) for rows in rounds]
    out = []
    for i, first in enumerate(per_round[0]):
        values = [v for v in (results[i]["measured"] for results in per_round) if v is not None]
        result = dict(first)
        if values:
            value = statistics.median_low(values)
            result["measured"] = value
            result["met"] = _met(first["kind"], value, first["goal"])
        if len(per_round) > 1:
            result["rounds"] = [results[i]["measured"] for results in per_round]
        out.append(result)
    return out


def format_targets(results: list[dict]) -> str:
    lines = []
    for t in results:
        if t["measured"] is None:
            lines.append(f"{t['target']}: not measured")
            continue
        spread = ""
        if len(t.get("rounds", ())) > 1:
            spread = (
                "  (median of rounds: "
                + ", ".join("-" if v is None else f"{v:.2f}" for v in t["rounds"])
                + ")"
            )
        if t["kind"] == "info":
            lines.append(f"{t['target']}: {t['measured']:.2f}x{spread}")
            continue
        if t["kind"] in ("ratio", "best"):
            shown, goal = f"{t['measured']:.2f}x", f">= {t['goal']:g}x"
        elif t["kind"] in ("p99", "rss_idle"):
            shown, goal = f"{t['measured']:.1f}", f"<= {t['goal']:g}"
        elif t["kind"] == "rss_ratio":
            shown, goal = f"{t['measured']:.2f}x", f"<= {t['goal']:g}x"
        else:
            shown, goal = f"{t['measured']:,.0f}", f">= {t['goal']:,.0f}"
        lines.append(f"{t['target']}: {shown} (target {goal}) {'met' if t['met'] else 'MISSED'}{spread}")
    return "\n".join(lines)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def table(rows: list[Row]) -> str:
    order = {name: i for i, name in enumerate(WORKLOADS.values())}
    rows = sorted(rows, key=lambda r: order.get(r.workload, 99))
    head = (
        f"{'workload':<24} {'system':<34} {'msgs/s':>11} {'MB/s':>7} {'cpu µs':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}  notes"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.workload:<24} {r.system:<34} {_num(r.msgs_per_s):>11} {_num(r.mb_per_s, 1):>7} "
            f"{_num(r.extra.get('cpu_us_per_msg'), 2):>7} "
            f"{_num(r.p50_ms, 2):>8} {_num(r.p99_ms, 2):>8} {_num(r.p999_ms, 2):>9}  {r.notes}"
        )
    lines.append("cpu µs: CPU of the client and the servers (from /proc) a message, where measured")
    return "\n".join(lines)


def finish(facts: dict, started: float, warnings: list[str]) -> None:
    """The run's closing facts: load average at the end, duration since ``started`` (monotonic),
    the warnings gathered while it ran."""
    facts["loadavg_end"] = os.getloadavg()
    facts["duration_s"] = round(time.monotonic() - started, 1)
    facts["warnings"] = warnings


def machine_facts() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    os_name = next(
        (
            line.split("=", 1)[1].strip('"')
            for line in _read("/etc/os-release").splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        platform.system(),
    )
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 2**20, 1),
        "os": os_name,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "loadavg_start": os.getloadavg(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def write_json(path: Path, facts: dict, settings: dict, rows: list[Row], target_results: list[dict]) -> None:
    write_document(
        path,
        {
            "machine": facts,
            "settings": settings,
            "rows": [r.as_dict() for r in rows],
            "targets": target_results,
        },
    )


def write_document(path: Path, document: dict) -> None:
    """``document`` as strict JSON (NaN and inf as null, floats rounded), replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_clean(document), indent=2, allow_nan=False, default=str) + "\n")
    tmp.replace(path)


def _clean(value):
    """NaN/inf become null (strict JSON); floats rounded to what the figures can carry."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
