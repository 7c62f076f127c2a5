"""Reconciling a Broker: its Service and Pod exist, its status mirrors the Pod, the primary knows it.

Idempotent and safe to call from any trigger (the Broker's create/update/resume handlers, an
event of its Pod or Service, the periodic timer): each call re-reads the Broker under a
per-object lock and does only what is missing. Status is written before the primary is called:
the manager's Kubernetes launcher waits for ``status.address`` while it holds the primary's
write lock, so registering first could wait on the launcher that waits on us.

Deletion (the finalizer) refuses to let a Broker go while the primary still places partitions
on it — memory-mode data would be lost silently — unless the Broker is annotated
``myqueue.io/on-delete: move-partitions`` (then the primary moves them) or its namespace is
being deleted (then nothing is waited for: a namespace deletion must never wedge).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from . import metrics
from .config import BLOCKED_DELETE_DELAY_S, BROKERS, MOVE_PARTITIONS, ON_DELETE_ANNOTATION, RELEASE_UNINSTALL
from .context import Context, InvalidSpec, RetryLater, write_status
from .primary import PrimaryError, PrimaryRefused, PrimaryUnavailable
from .render import broker as render_broker
from .render import conditions as render_conditions
from .render.broker import BrokerPhase, Registration

log = logging.getLogger(__name__)


def _write(ctx: Context, obj: dict, status: dict) -> None:
    write_status(ctx, BROKERS, obj, status)


@metrics.reconciles("Broker")
def reconcile_broker(ctx: Context, namespace: str, name: str) -> render_broker.Readiness | None:
    """Bring one Broker's objects and status up to date; None when it is gone or being deleted.

    Raises InvalidSpec for a spec that cannot run, RetryLater when the primary did not answer.
    """
    with ctx.locks.hold((BROKERS, namespace, name)):
        broker = ctx.kube.get_custom(BROKERS, namespace, name)
        if broker is None or broker["metadata"].get("deletionTimestamp"):
            return None
        spec = broker.get("spec") or {}
        problems = render_broker.broker_spec_problems(name, spec, ctx.config)
        if problems:
            _write(
                ctx,
                broker,
                render_conditions.invalid_status(broker, problems, ctx.now(), phase=BrokerPhase.FAILED.value),
            )
            raise InvalidSpec("; ".join(problems))

        if ctx.kube.get_service(namespace, name) is None:
            ctx.kube.create_service(render_broker.broker_service(broker))
            log.info("created service %s/%s", namespace, name)

        pod = ctx.kube.get_pod(namespace, name)
        state = render_broker.pod_state(pod)
        if (
            state.exists
            and not state.deleting
            and state.spec_hash != render_broker.pod_spec_hash(spec, ctx.config)
        ):
            # The spec changed (image, store, resources): replace the Pod; its deletion event
            # brings us back here to create the new one.
            ctx.kube.delete_pod(namespace, name, uid=pod["metadata"].get("uid"))
            ctx.events(broker, "Normal", "PodReplaced", f"spec changed: replacing pod {name}")
            state = render_broker.PodState(exists=True, deleting=True)
        if not state.exists:
            had_pod = bool((broker.get("status") or {}).get("podName"))
            pod = ctx.kube.create_pod(render_broker.broker_pod(broker, ctx.config))
            state = render_broker.pod_state(pod)
            ctx.events(broker, "Normal", "PodRecreated" if had_pod else "PodCreated", f"created pod {name}")

        address = (
            render_broker.broker_address(name, namespace, state.ip, ctx.config.address_mode)
            if state.ready
            else None
        )
        pod_fields = {
            "pod_name": name if state.exists and not state.deleting else None,
            "pod_ip": state.ip if not state.deleting else None,
            "address": address,
        }
        if not state.ready or (broker.get("status") or {}).get("address") != address:
            # Publish the new address first (the launcher waits for it); a broker already
            # known at this address goes straight to (re-)registration, without a flip of Ready.
            registration = Registration.PENDING if state.ready else Registration.NOT_YET
            readiness = render_broker.broker_readiness(name, state, registration)
            _write(ctx, broker, render_broker.broker_status(broker, readiness, ctx.now(), **pod_fields))
            if not state.ready:
                return readiness

        detail, count = "", None
        try:
            ctx.primary.register_broker(name, address)
            count = len(ctx.primary.metadata().placed_on(name))
            registration, detail = Registration.REGISTERED, f"as {address}"
        except PrimaryUnavailable as e:
            registration, detail = Registration.UNAVAILABLE, str(e)
        except PrimaryRefused as e:
            registration, detail = Registration.REFUSED, e.message
        readiness = render_broker.broker_readiness(name, state, registration, detail)
        _write(
            ctx,
            broker,
            render_broker.broker_status(broker, readiness, ctx.now(), partition_count=count, **pod_fields),
        )
        if registration is Registration.UNAVAILABLE:
            raise RetryLater(readiness.message, ctx.config.retry_delay_s)
        return readiness


@metrics.reconciles("Broker", "finalize")
def finalize_broker(ctx: Context, broker: Mapping) -> str:
    """The Broker is being deleted: unregister it and remove its Pod and Service; returns what was done.

    Raises RetryLater while it still holds partitions (DeletionBlocked) or the primary is down.
    """
    meta = broker["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    with ctx.locks.hold((BROKERS, namespace, name)):
        current = ctx.kube.get_custom(BROKERS, namespace, name) or dict(broker)
        if ctx.kube.namespace_terminating(namespace):
            # Everything goes: do not wait for anyone (the primary may already be gone).
            try:
                ctx.primary.unregister_broker(name, force=True)  # everything in it goes anyway
            except PrimaryError as e:
                log.info("namespace %s is terminating; not unregistering %s: %s", namespace, name, e)
            _remove_children(ctx, namespace, name)
            return "namespace terminating: released without waiting"
        annotations = current["metadata"].get("annotations") or {}
        if annotations.get(ON_DELETE_ANNOTATION) == RELEASE_UNINSTALL:
            # The release is being uninstalled (the chart's pre-delete hook): the primary's
            # configuration and the data stay in PostgreSQL for a reinstall, placement included.
            _remove_children(ctx, namespace, name)
            return "release uninstalled: released without unregistering (its partitions stay placed on it)"
        try:
            metadata = ctx.primary.metadata()
        except PrimaryUnavailable as e:
            raise RetryLater(f"cannot check the broker's partitions: {e}", ctx.config.retry_delay_s) from e
        registered = name in metadata.brokers
        held = [f"{topic}:{partition}" for topic, partition in metadata.placed_on(name)]
        move = annotations.get(ON_DELETE_ANNOTATION) == MOVE_PARTITIONS
        if registered and held and not move:
            _write(ctx, current, render_broker.blocked_status(current, held, ctx.now()))
            raise RetryLater(
                f"deletion blocked: still holds {len(held)} partition(s)", BLOCKED_DELETE_DELAY_S
            )
        done = "not registered with the primary"
        if registered:
            try:
                answer = (
                    ctx.primary.unregister_broker(name, force=move) or {}
                )  # the annotation is the consent
            except PrimaryUnavailable as e:
                raise RetryLater(f"cannot unregister: {e}", ctx.config.retry_delay_s) from e
            done = f"unregistered; the primary moved {answer.get('partitions_moved', 0)} partition(s)"
            ctx.events(current, "Normal", "Unregistered", done)
        _remove_children(ctx, namespace, name)
    ctx.locks.forget((BROKERS, namespace, name))
    return done


def _remove_children(ctx: Context, namespace: str, name: str) -> None:
    """Delete the Pod and Service now (garbage collection would too, later, and only with a
    controller manager running)."""
    ctx.kube.delete_pod(namespace, name)
    ctx.kube.delete_service(namespace, name)
