"""The operator's own Prometheus metrics, served on ``--metrics-port`` (docs/metrics.md).

- ``myqueue_operator_reconcile_total{kind, action, outcome}`` and
  ``myqueue_operator_reconcile_seconds{kind, action}``: every reconcile and finalize of a Broker or
  Topic, whatever triggered it (kopf's create/update/resume, the resync timer, a child Pod's event),
  by how it ended: ``success``, ``invalid`` (a bad spec), ``retry`` (waiting on something),
  ``api_error`` (the Kubernetes API failed) or ``error`` (anything else, a bug);
- ``myqueue_operator_handler_failures_total{handler, failure}``: handler calls that failed, as kopf
  sees them: ``permanent`` (not retried), ``temporary`` (retried after a delay) or ``unexpected``
  (an exception kopf retries with its default backoff).

Cardinality: kind × action × outcome (2 × 2 × 5) and handler ids × 3: fixed by the code, never by
the objects. The families live on prometheus_client's default registry, beside its process and
Python collectors; ``serve`` exposes it with prometheus_client's own HTTP server.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import kopf
from kubernetes.client import ApiException
from prometheus_client import Counter, Histogram, start_http_server

from .context import InvalidSpec, RetryLater

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_METRICS_PORT = 8081  # MYQUEUE_OPERATOR_METRICS_PORT / --metrics-port; 0 turns the endpoint off
DEFAULT_METRICS_ADDRESS = "0.0.0.0"  # noqa: S104 - MYQUEUE_OPERATOR_METRICS_ADDRESS: scraped from other pods

RECONCILES = Counter(
    "myqueue_operator_reconcile_total",
    "Reconciles and finalizes of Broker and Topic resources, by outcome",
    ["kind", "action", "outcome"],
)
RECONCILE_SECONDS = Histogram(
    "myqueue_operator_reconcile_seconds",
    "Time one reconcile or finalize took",
    ["kind", "action"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HANDLER_FAILURES = Counter(
    "myqueue_operator_handler_failures_total",
    "kopf handler calls that failed, by kopf's kind of failure",
    ["handler", "failure"],
)


def outcome_of(error: BaseException | None) -> str:
    if error is None:
        return "success"
    if isinstance(error, InvalidSpec):
        return "invalid"
    if isinstance(error, RetryLater):
        return "retry"
    if isinstance(error, ApiException):
        return "api_error"
    return "error"


def failure_of(error: BaseException) -> str:
    """How kopf treats ``error`` raised by a handler (after handlers.kopf_errors' mapping)."""
    outcome = outcome_of(error)
    if outcome == "invalid" or isinstance(error, kopf.PermanentError):
        return "permanent"
    if outcome in ("retry", "api_error") or isinstance(error, kopf.TemporaryError):
        return "temporary"
    return "unexpected"


def reconciles(kind: str, action: str = "reconcile") -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Count and time every call of the decorated reconcile (or finalize) function."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                return fn(*args, **kwargs)
            except BaseException as e:
                error = e
                raise
            finally:
                RECONCILE_SECONDS.labels(kind, action).observe(time.perf_counter() - started)
                RECONCILES.labels(kind, action, outcome_of(error)).inc()

        return wrapper

    return decorate


def handler_failed(handler: str, error: BaseException) -> None:
    HANDLER_FAILURES.labels(handler, failure_of(error)).inc()


def serve(port: int, address: str = DEFAULT_METRICS_ADDRESS) -> None:
    """Serve the default registry's metrics on ``address:port`` in a daemon thread (0: not at all)."""
    if port:
        start_http_server(port, addr=address)
