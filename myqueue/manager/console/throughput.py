"""The console's throughput page and the JSON it polls (``/api/throughput``: the sampler's series)."""

import time

from flask import jsonify
from flask.typing import ResponseReturnValue

from .context import ConsoleContext


def throughput(c: ConsoleContext) -> ResponseReturnValue:
    view = c.current_view()
    if view is None:
        return c.unavailable()
    return c.page("throughput.html", title="Throughput", topics=sorted(view.topics))


def throughput_data(c: ConsoleContext) -> ResponseReturnValue:
    view = c.current_view()
    if view is None:
        return jsonify(status="failure", message="no cluster view yet", reason="UNAVAILABLE"), 503
    brokers, rows = c.snapshot(view)
    return jsonify(
        now=round(time.time(), 3),
        primary_reachable=c.replica.primary_reachable,
        brokers={b.name: b.up for b in brokers},
        end_offsets={f"{r.topic}:{r.partition}": r.end_offset for r in rows},
        **c.sampler.series(),
    )


ROUTES = (
    ("/throughput", "throughput", "GET", throughput),
    ("/api/throughput", "throughput_data", "GET", throughput_data),
)
