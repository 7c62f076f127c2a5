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

import json
import logging
from collections.abc import Mapping

from kubernetes.client import ApiException

from . import metrics
from .config import (
    ADD_BROKERS,
    BLOCKED_DELETE_DELAY_S,
    BROKERS,
    MOVE_PARTITIONS,
    ON_DELETE_ANNOTATION,
    REBALANCE_ANNOTATION,
    RELEASE_UNINSTALL,
    ROLL_LOCK,
)
from .context import Context, InvalidSpec, RetryLater, write_status
from .primary import PrimaryError, PrimaryRefused, PrimaryUnavailable
from .render import broker as render_broker
from .render import conditions as render_conditions
from .render import rolling as render_rolling
from .render.broker import BrokerPhase, Registration

log = logging.getLogger(__name__)


def _write(ctx: Context, obj: dict, status: dict) -> None:
    write_status(ctx, BROKERS, obj, status)


@metrics.reconciles("Broker")
def reconcile_broker(ctx: Context, namespace: str, name: str) -> render_broker.Readiness | None:
    """Bring one Broker's objects and status up to date; None when it is gone or being deleted.

    Raises InvalidSpec for a spec that cannot run, RetryLater when the primary did not answer
    or its Pod waits for its turn in a rolling update. A Broker that has just become Ready
    hands the turn on at once: the next Broker waiting to roll is reconciled now, not at its
    next retry.
    """
    readiness, became_ready = _reconcile(ctx, namespace, name)
    if became_ready:
        _hand_on_roll(ctx, namespace, name)
    return readiness


def _hand_on_roll(ctx: Context, namespace: str, name: str) -> None:
    """Reconcile the first Broker (by name) whose Pod waits to be rolled; its failure is its own."""
    waiting = sorted(
        b["metadata"]["name"]
        for b in ctx.kube.list_custom(BROKERS, namespace)
        if b["metadata"]["name"] != name
        and (render_conditions.condition_of(b.get("status"), render_rolling.UP_TO_DATE) or {}).get("reason")
        == render_rolling.ROLL_WAITING
    )
    if not waiting:
        return
    try:
        reconcile_broker(ctx, namespace, waiting[0])
    except (InvalidSpec, RetryLater, ApiException) as e:
        log.info("broker %s/%s after %s became ready: %s", namespace, waiting[0], name, e)


def _reconcile(ctx: Context, namespace: str, name: str) -> tuple[render_broker.Readiness | None, bool]:
    """``reconcile_broker``'s work under the Broker's lock; also whether it has just become Ready."""
    with ctx.locks.hold((BROKERS, namespace, name)):
        broker = ctx.kube.get_custom(BROKERS, namespace, name)
        if broker is None or broker["metadata"].get("deletionTimestamp"):
            return None, False
        was_ready = (render_conditions.condition_of(broker.get("status")) or {}).get("status") == "True"
        spec = broker.get("spec") or {}
        problems = render_broker.broker_spec_problems(name, spec, ctx.config)
        if problems:
            raise _invalid(ctx, broker, problems)

        if ctx.kube.get_service(namespace, name) is None:
            ctx.kube.create_service(render_broker.broker_service(broker))
            log.info("created service %s/%s", namespace, name)
        external = _external_service(ctx, broker)

        pod = ctx.kube.get_pod(namespace, name)
        state = render_broker.pod_state(pod)
        waiting_for = None
        if render_rolling.outdated(broker, pod, ctx.config):
            # The spec changed (image, store, resources, scheduling): replace the Pod — at once
            # when it is not serving anyway, else in its turn of the rolling update. Its
            # deletion event brings us back here to create the new one.
            waiting_for = _roll_turn(ctx, namespace, name, pod) if state.ready else _replace(ctx, pod)
            if waiting_for is None:
                ctx.events(broker, "Normal", "PodReplaced", f"spec changed: replacing pod {name}")
                state = render_broker.PodState(exists=True, deleting=True)
        if not state.exists:
            had_pod = bool((broker.get("status") or {}).get("podName"))
            pod = _create_pod(ctx, broker)
            state = render_broker.pod_state(pod)
            ctx.events(broker, "Normal", "PodRecreated" if had_pod else "PodCreated", f"created pod {name}")
        _write_up_to_date(ctx, broker, waiting_for, replacing=state.deleting)

        address = (
            render_broker.broker_address(name, namespace, state.ip, ctx.config.address_mode)
            if state.ready
            else None
        )
        pod_fields = {
            "pod_name": name if state.exists and not state.deleting else None,
            "pod_ip": state.ip if not state.deleting else None,
            "address": address,
            "external_address": render_broker.external_address(broker, external, state),
        }
        if not state.ready or (broker.get("status") or {}).get("address") != address:
            # Publish the new address first (the launcher waits for it); a broker already
            # known at this address goes straight to (re-)registration, without a flip of Ready.
            registration = Registration.PENDING if state.ready else Registration.NOT_YET
            readiness = render_broker.broker_readiness(name, state, registration)
            _write(ctx, broker, render_broker.broker_status(broker, readiness, ctx.now(), **pod_fields))
            if not state.ready:
                return readiness, False

        detail, count = "", None
        try:
            external_address = pod_fields["external_address"]
            listeners = {render_broker.EXTERNAL_LISTENER: external_address} if external_address else {}
            ctx.primary.register_broker(name, address, listeners)
            registration, detail = (
                Registration.REGISTERED,
                f"as {address}" + "".join(f", {listener} {url}" for listener, url in listeners.items()),
            )
            _rebalance_if_asked(ctx, broker)
            count = len(ctx.primary.metadata().placed_on(name))
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
        if waiting_for:
            raise RetryLater(f"rolling update: {waiting_for}", ctx.config.retry_delay_s)
        return readiness, readiness.ready and not was_ready


def _external_service(ctx: Context, broker: dict) -> dict | None:
    """The Service of ``spec.external``: created when asked for, recreated when its type or node
    port changed, deleted when no longer asked for; the live one (None without)."""
    meta = broker["metadata"]
    namespace, service_name = meta["namespace"], render_broker.external_service_name(meta["name"])
    live = ctx.kube.get_service(namespace, service_name)
    wanted = render_broker.external_service(broker)
    if live is not None and render_broker.external_service_outdated(live, broker):
        ctx.kube.delete_service(namespace, service_name)
        log.info("deleted service %s/%s (spec.external changed or removed)", namespace, service_name)
        live = None
    if live is None and wanted is not None:
        try:
            live = ctx.kube.create_service(wanted)
        except ApiException as e:
            if e.status != 422:  # e.g. "provided port is already allocated"
                raise
            raise _invalid(
                ctx, broker, [f"the API server refused the external Service: {_api_message(e)}"]
            ) from e
        ctx.events(broker, "Normal", "ExternalServiceCreated", f"created service {service_name}")
    return live


def _rebalance_if_asked(ctx: Context, broker: dict) -> None:
    """``myqueue.io/rebalance: add-brokers`` on a registered Broker: the primary moves partitions
    onto it until it holds its share; the outcome goes into ``status.rebalance`` and an Event, and
    the annotation is removed (the request is done). A refusal is reported the same way."""
    meta = broker["metadata"]
    if (meta.get("annotations") or {}).get(REBALANCE_ANNOTATION) != ADD_BROKERS:
        return
    name = meta["name"]
    try:
        answer = ctx.primary.rebalance([name])
        moved = int(answer.get("partitions_moved", 0))
        outcome = {"mode": ADD_BROKERS, "partitionsMoved": moved, "finishedAt": ctx.now(), "message": ""}
        skipped = int(answer.get("skipped_with_records", 0))
        outcome["message"] = f"moved {moved} partition(s) onto {name}" + (
            f"; {skipped} holding records left in place (memory store)" if skipped else ""
        )
        ctx.events(broker, "Normal", "Rebalanced", outcome["message"])
    except PrimaryRefused as e:
        outcome = {"mode": ADD_BROKERS, "partitionsMoved": 0, "finishedAt": ctx.now(), "message": e.message}
        ctx.events(broker, "Warning", "RebalanceRefused", e.message)
    _write(ctx, broker, {"rebalance": outcome})
    ctx.kube.annotate_custom(BROKERS, meta["namespace"], name, {REBALANCE_ANNOTATION: None})


def _roll_turn(ctx: Context, namespace: str, name: str, pod: Mapping) -> str | None:
    """Replace the outdated Pod if it is this broker's turn (None), else say whom it waits for.

    One lock for the namespace's brokers makes the check and the deletion one step: two
    brokers deciding at once could otherwise both see the other Ready and go down together.
    """
    with ctx.locks.hold((BROKERS, namespace, ROLL_LOCK)):
        brokers = ctx.kube.list_custom(BROKERS, namespace)
        pods = {
            p["metadata"]["name"]: p
            for p in ctx.kube.list_pods(
                namespace, f"{render_broker.MANAGED_BY}={render_broker.OPERATOR_NAME}"
            )
        }
        waiting_for = render_rolling.roll_blocker(name, brokers, pods, ctx.config)
        if waiting_for is None:
            return _replace(ctx, pod)
    log.info("broker %s/%s: rolling update %s", namespace, name, waiting_for)
    return waiting_for


def _replace(ctx: Context, pod: Mapping) -> None:
    """Delete the outdated Pod (only that one: its uid), for a new one to be created."""
    meta = pod["metadata"]
    ctx.kube.delete_pod(meta["namespace"], meta["name"], uid=meta.get("uid"))


def _create_pod(ctx: Context, broker: dict) -> dict:
    """Create the Broker's Pod; a Pod the API server refuses (a bad affinity, an unknown
    PriorityClass) is the spec's fault: InvalidSpec with the server's reason."""
    try:
        return ctx.kube.create_pod(render_broker.broker_pod(broker, ctx.config))
    except ApiException as e:
        if e.status not in (403, 422):  # 403: an admission plugin (e.g. a PriorityClass quota) refused
            raise
        raise _invalid(ctx, broker, [f"the API server refused the broker's pod: {_api_message(e)}"]) from e


def _invalid(ctx: Context, broker: dict, problems: list[str]) -> InvalidSpec:
    """Mark the Broker Failed with InvalidSpec naming the problems; the error to raise."""
    _write(
        ctx,
        broker,
        render_conditions.invalid_status(broker, problems, ctx.now(), phase=BrokerPhase.FAILED.value),
    )
    return InvalidSpec("; ".join(problems))


def _api_message(error: ApiException) -> str:
    """The API server's own message from a refusal (its Status body), else the HTTP reason."""
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


def _write_up_to_date(ctx: Context, broker: dict, waiting_for: str | None, replacing: bool) -> None:
    """Keep the PodUpToDate condition true to the Pod (written only when it changes)."""
    old = (broker.get("status") or {}).get("conditions") or []
    new = render_rolling.up_to_date_condition(
        waiting_for, broker["metadata"].get("generation"), ctx.now(), old, replacing
    )
    current = render_conditions.condition_of(broker.get("status"), render_rolling.UP_TO_DATE)
    if current and {k: current.get(k) for k in new} == new:
        return
    if waiting_for and not render_conditions.condition_changed(current, new):
        return  # the same wait: do not rewrite the status each retry for a new message
    _write(ctx, broker, {"conditions": render_conditions.with_condition(old, new)})


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
    """Delete the Pod and Services now (garbage collection would too, later, and only with a
    controller manager running)."""
    ctx.kube.delete_pod(namespace, name)
    ctx.kube.delete_service(namespace, name)
    ctx.kube.delete_service(namespace, render_broker.external_service_name(name))
