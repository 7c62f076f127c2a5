"""The request and health metrics every HTTP service exposes on ``/metrics`` (docs/metrics.md).

Why a module of its own: the Flask hooks (``base_app``) and the lean WSGI lane (``lean``) record
the same families, so both call ``RequestMetrics.observe`` and neither defines a metric. What it
leaves to others: each component's own families (``broker/metrics.py``, ``manager/metrics.py``).

Long-polls (a broker fetch with ``wait_ms``, the primary's ``GET /v1/view?wait=``) are counted in
``myqueue_http_requests_total`` like any request, but their time goes to
``myqueue_http_long_poll_seconds``, never to ``myqueue_http_request_seconds``: a 20 s wait is the
contract of the call, not a slow answer, and would make every latency quantile meaningless.

Cardinality: ``endpoint`` is the route's rule (``/v1/partitions/<topic>/<partition>/records``, never
the concrete path; ``unmatched`` for a 404), ``method`` an HTTP verb, ``code`` a status: bounded by
the route table. Per-partition families elsewhere are switched off with
``MYQUEUE_METRICS_PER_PARTITION=0`` (``per_partition_enabled``).
"""

import os
import time
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import parse_qsl

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Query parameters that make a request a long-poll when they are present and not zero.
LONG_POLL_ARGS = ("wait_ms", "wait")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30)
LONG_POLL_BUCKETS = (0.01, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
# The value of the ``partition`` label when per-partition series are off: not a valid partition
# name (core.names), so it never collides with one.
ALL_PARTITIONS = "*"
START_KEY = "myqueue.start"  # environ: when the app first ran for the request
PER_PARTITION_ENV = "MYQUEUE_METRICS_PER_PARTITION"


def per_partition_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """``MYQUEUE_METRICS_PER_PARTITION`` (default on): 0/false/no/off folds partitions into their topic."""
    return environ.get(PER_PARTITION_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def is_long_poll(args: Mapping[str, str]) -> bool:
    """True when the query asks the server to wait (``wait_ms`` or ``wait`` given and not 0)."""
    return any(args.get(name) not in (None, "", "0") for name in LONG_POLL_ARGS)


def environ_is_long_poll(environ: Mapping[str, object]) -> bool:
    """``is_long_poll`` for a WSGI environ; parses the query only when it mentions ``wait``."""
    query = environ.get("QUERY_STRING")
    if not isinstance(query, str) or "wait" not in query:
        return False
    return is_long_poll(dict(parse_qsl(query, keep_blank_values=True)))


def request_started(environ: dict) -> float:
    """When the app first ran for this request (``time.perf_counter``), recorded on the first call:
    a parked request (service/parking.py) runs the app twice and is timed from the first run."""
    return environ.setdefault(START_KEY, time.perf_counter())


class RequestMetrics:
    """``myqueue_http_*``: one instance per service process, on that service's registry."""

    def __init__(self, service: str, registry: CollectorRegistry):
        self._service = service
        self._requests = Counter(
            "myqueue_http_requests_total",
            "HTTP requests answered, by route rule, method and status code",
            ["service", "endpoint", "method", "code"],
            registry=registry,
        )
        self._latency = Histogram(
            "myqueue_http_request_seconds",
            "Time to answer an HTTP request that is not a long-poll",
            ["service", "endpoint", "method"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self._long_polls = Histogram(
            "myqueue_http_long_poll_seconds",
            "Time to answer a long-poll (wait_ms / wait given): mostly the wait the client asked for",
            ["service", "endpoint", "method"],
            registry=registry,
            buckets=LONG_POLL_BUCKETS,
        )

        # The label children by (endpoint, method, status, long-poll): ``labels()`` costs about four
        # times the increment itself, and this runs on every request. Bounded by the route table.
        self._children: dict[tuple[str, str, int, bool], tuple[Counter, Histogram]] = {}

    def observe(
        self, endpoint: str, method: str, status: int, seconds: float | None, long_poll: bool = False
    ) -> None:
        """Count one answered request; its time (if known) goes to the latency or long-poll histogram."""
        key = (endpoint, method, status, long_poll)
        children = self._children.get(key)
        if children is None:
            histogram = self._long_polls if long_poll else self._latency
            children = self._children[key] = (
                self._requests.labels(self._service, endpoint, method, str(status)),
                histogram.labels(self._service, endpoint, method),
            )
        if seconds is not None:
            children[1].observe(seconds)
        children[0].inc()


class HealthCollector(Collector):
    """``myqueue_ready`` and ``myqueue_http_requests_in_flight``, read at scrape time."""

    def __init__(self, service: str, ready: Callable[[], bool], in_flight: Callable[[], int]):
        self._service = service
        self._ready = ready
        self._in_flight = in_flight

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "myqueue_ready", "1 when the service answers /readyz with 200, else 0", labels=["service"]
            ),
            GaugeMetricFamily(
                "myqueue_http_requests_in_flight", "HTTP requests being answered now", labels=["service"]
            ),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        ready, in_flight = self._families()
        try:
            ok = self._ready()
        except Exception:  # noqa: BLE001 - a scrape answers 0, /readyz logs the cause
            ok = False
        ready.add_metric([self._service], 1.0 if ok else 0.0)
        in_flight.add_metric([self._service], float(self._in_flight()))
        return ready, in_flight
