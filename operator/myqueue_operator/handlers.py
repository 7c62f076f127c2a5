"""kopf wiring: which event calls which reconciler, and how failures are reported to kopf.

``build_registry(ctx)`` registers every handler on a fresh ``kopf.OperatorRegistry`` (no
import-time globals, so the timer interval comes from the config). ``configure(settings, ...)``
sets kopf's behaviour deliberately:

- one replica, **peering off** (``standalone=True`` in ``__main__``): nothing to coordinate, and
  no cluster-wide peering resources or RBAC; running two replicas is not supported;
- watch timeouts set (kopf's known silent-watch problem): the API server ends every watch after
  ``WATCH_SERVER_TIMEOUT_S`` and the client gives up on a silent one after ``WATCH_CLIENT_TIMEOUT_S``;
- progress and last-handled state in annotations under ``myqueue.io/`` (the CRDs' status schema
  is ours, so kopf keeps nothing in status); only explicit Events are posted, never log lines;
- in one namespace, no cluster-wide scanning of CRDs or namespaces (no cluster-wide RBAC at all):
  the CRDs must exist when the operator starts (Helm installs ``crds/`` first).

Failures: ``InvalidSpec`` -> ``kopf.PermanentError`` (the Ready condition says why);
``RetryLater``, API errors and unreachable managers -> ``kopf.TemporaryError(delay=...)``. Each
failed handler call is counted in ``myqueue_operator_handler_failures_total`` (metrics.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import kopf
from kubernetes.client import ApiException

from . import brokers, metrics, topics
from .config import (
    ADD_BROKERS,
    ANNOTATION_PREFIX,
    BROKERS,
    FINALIZER,
    GROUP,
    REBALANCE_ANNOTATION,
    TIMER_EXIT_POLL_S,
    TOPICS,
    VERSION,
    WATCH_CLIENT_TIMEOUT_S,
    WATCH_SERVER_TIMEOUT_S,
)
from .context import Context, InvalidSpec, RetryLater
from .render import broker as render_broker

log = logging.getLogger(__name__)


def configure(settings: kopf.OperatorSettings, namespaced: bool) -> None:
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_S
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_S
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.loggers = False  # Events only where we post them, on real changes
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = render_broker.OPERATOR_NAME  # the "From" of its Events
    settings.execution.max_workers = 16  # a registration may wait behind the primary's write lock
    settings.scanning.disabled = namespaced
    # A Topic's resync timer that is running (or queued for a thread) when its resource is deleted cannot
    # exit at once; kopf then re-checks it only every cancellation_polling (60 s by default), so deleting
    # 1,000 Topics took 68 s against 11 s with no timer due (bench.reconcile). Re-check each second.
    settings.background.cancellation_polling = TIMER_EXIT_POLL_S


def kopf_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map our failures to kopf's retry semantics, in one place."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return mapped(*args, **kwargs)
        except Exception as e:
            metrics.handler_failed(fn.__name__, e)
            raise

    def mapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InvalidSpec as e:
            raise kopf.PermanentError(str(e)) from e
        except RetryLater as e:
            raise kopf.TemporaryError(str(e), delay=e.delay) from e
        except ApiException as e:
            raise kopf.TemporaryError(f"Kubernetes API: {e.status} {e.reason}", delay=5) from e

    return wrapper


def _logged(handler: str, what: str, fn: Callable[[], Any]) -> None:
    """For triggers kopf does not retry (Pod events, timers): log and count; the next trigger retries."""
    try:
        fn()
    except (InvalidSpec, RetryLater) as e:
        metrics.handler_failed(handler, e)
        log.info("%s: %s", what, e)
    except ApiException as e:
        metrics.handler_failed(handler, e)
        log.warning("%s: Kubernetes API %s %s", what, e.status, e.reason)


def kopf_event_sink(obj, type_: str, reason: str, message: str) -> None:
    kopf.event(obj, type=type_, reason=reason, message=message[:1024])


def build_registry(ctx: Context) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    namespaced = ctx.config.namespace is not None

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster ServiceAccount, else $KUBECONFIG — the same as our own client (kube.py)."""
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, namespaced)
        log.info(
            "myqueue operator: namespace=%s primary=%s address-mode=%s",
            ctx.config.namespace or "(all)",
            ctx.config.primary_url,
            ctx.config.address_mode.value,
        )

    # --- Broker ------------------------------------------------------------------------------------------------
    @kopf.on.resume(GROUP, VERSION, BROKERS, id="reconcile-broker", registry=registry)
    @kopf.on.create(GROUP, VERSION, BROKERS, id="reconcile-broker", registry=registry)
    @kopf.on.update(GROUP, VERSION, BROKERS, field="spec", id="reconcile-broker", registry=registry)
    @kopf_errors
    def broker_changed(namespace: str, name: str, **_: Any) -> None:
        brokers.reconcile_broker(ctx, namespace, name)

    @kopf.timer(
        GROUP,
        VERSION,
        BROKERS,
        id="resync-broker",
        interval=ctx.config.resync_s,
        initial_delay=ctx.config.resync_s,
        registry=registry,
    )
    def broker_resync(namespace: str, name: str, **_: Any) -> None:
        _logged(
            "resync-broker",
            f"broker {namespace}/{name}",
            lambda: brokers.reconcile_broker(ctx, namespace, name),
        )

    @kopf.on.event(
        GROUP,
        VERSION,
        BROKERS,
        id="rebalance-request",
        annotations={REBALANCE_ANNOTATION: ADD_BROKERS},
        registry=registry,
    )
    def rebalance_requested(namespace: str, name: str, **_: Any) -> None:
        """``myqueue.io/rebalance`` set: act now, not at the next resync (kopf leaves annotations
        under its own storage prefix out of the diff an update handler sees)."""
        _logged(
            "rebalance-request",
            f"broker {namespace}/{name}",
            lambda: brokers.reconcile_broker(ctx, namespace, name),
        )

    @kopf.on.event(
        "",
        "v1",
        "pods",
        id="broker-pod",
        labels={render_broker.MANAGED_BY: render_broker.OPERATOR_NAME},
        registry=registry,
    )
    @kopf.on.event(
        "",
        "v1",
        "services",
        id="broker-service",
        labels={render_broker.MANAGED_BY: render_broker.OPERATOR_NAME},
        registry=registry,
    )
    def child_changed(namespace: str, labels: dict, **_: Any) -> None:
        """A broker's Pod or Service changed or went away: reconcile its Broker (recreates it)."""
        broker = labels.get(render_broker.BROKER_LABEL)
        if broker:
            _logged(
                "broker-child",
                f"broker {namespace}/{broker}",
                lambda: brokers.reconcile_broker(ctx, namespace, broker),
            )

    @kopf.on.delete(GROUP, VERSION, BROKERS, id="finalize-broker", registry=registry)
    @kopf_errors
    def broker_deleted(body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
        logger.info("broker deleted: %s", brokers.finalize_broker(ctx, dict(body)))

    # --- Topic ---------------------------------------------------------------------------------------------------
    @kopf.on.resume(GROUP, VERSION, TOPICS, id="reconcile-topic", registry=registry)
    @kopf.on.create(GROUP, VERSION, TOPICS, id="reconcile-topic", registry=registry)
    @kopf.on.update(GROUP, VERSION, TOPICS, field="spec", id="reconcile-topic", registry=registry)
    @kopf_errors
    def topic_changed(namespace: str, name: str, **_: Any) -> None:
        topics.reconcile_topic(ctx, namespace, name)

    @kopf.timer(
        GROUP,
        VERSION,
        TOPICS,
        id="resync-topic",
        interval=ctx.config.resync_s,
        initial_delay=ctx.config.resync_s,
        registry=registry,
    )
    def topic_resync(namespace: str, name: str, **_: Any) -> None:
        _logged(
            "resync-topic", f"topic {namespace}/{name}", lambda: topics.reconcile_topic(ctx, namespace, name)
        )

    @kopf.on.delete(GROUP, VERSION, TOPICS, id="finalize-topic", registry=registry)
    @kopf_errors
    def topic_deleted(body: kopf.Body, logger: logging.Logger, **_: Any) -> None:
        logger.info(topics.finalize_topic(ctx, dict(body)))

    return registry
