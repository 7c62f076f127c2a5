"""Reconciling a Topic: the primary has at least ``spec.partitions`` partitions of it; status mirrors them.

The primary manager is the source of truth (operator/README.md). The operator never places a
partition itself: it asks the primary to create the missing ones (``POST /topics/add``), and the
primary places each with ``myqueue.core.placement.place_partitions`` — the one placement function
— over its ready brokers. Then the operator copies placement (``/v1/metadata?topics=<t>``) and log
offsets (each broker's ``/v1/partitions?topic=<t>``) into status: every call names the topic, so a
reconcile costs the same however many topics there are.

``spec.config`` (retention, like Strimzi's KafkaTopic) is made the topic's whole configuration in
the primary when it differs from the one the metadata carries (one PATCH, only on a difference), and
status.config shows what the primary holds. Log starts come from the same per-broker listing as the
end offsets (one call per broker), so a resync costs what it did.

Idempotent: what exists is counted first, so a resumed operator creates nothing twice, and a
refused decrease changes nothing but the Ready condition. Deleting a Topic follows
``spec.deletionPolicy``: ``Retain`` (the default) keeps the topic and its data in the managers,
``Delete`` deletes it through the primary before the finalizer goes (``finalize_topic``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from myqueue.core.reasons import Reason
from myqueue.core.view import ClusterView

from . import metrics
from .config import GROUPS_DEADLINE_S, TOPICS
from .context import Context, InvalidSpec, RetryLater, write_status
from .primary import PrimaryError, PrimaryRefused, PrimaryUnavailable
from .render import conditions as render_conditions
from .render import topic as render_topic
from .render.conditions import ConditionReason

log = logging.getLogger(__name__)


def _write(ctx: Context, obj: dict, status: dict) -> None:
    write_status(ctx, TOPICS, obj, status)


def log_offsets(ctx: Context, metadata: ClusterView, topic: str) -> dict[str, tuple[int, int] | None]:
    """partition -> (log start, end offset), asking each broker that holds some of the topic once."""
    by_broker: dict[str, list[str]] = {}
    for p in metadata.topics.get(topic, ()):
        if p.broker:
            by_broker.setdefault(p.broker, []).append(p.partition)
    offsets: dict[str, tuple[int, int] | None] = {}
    for broker, partitions in by_broker.items():
        info = metadata.brokers.get(broker)
        address = info.address if info else None
        try:
            hosted = ctx.primary.log_offsets(address, topic) if address else {}
        except PrimaryError as e:
            log.debug("no end offsets from %s: %s", broker, e)
            hosted = {}
        for partition in partitions:
            offsets[partition] = hosted.get((topic, partition))
    return offsets


def group_lags(ctx: Context, topic: str) -> list[dict] | None:
    """status.groups: the consumer groups reading ``topic`` with their lag (render_topic.topic_groups).

    One ``GET /v1/groups``, then one describe per group that subscribed to the topic (at most
    ``MAX_STATUS_GROUPS``; the primary reads their offsets from the brokers). The describes stop at
    the first that does not answer or after ``GROUPS_DEADLINE_S``, so a slow broker never holds a
    reconcile for long: the groups not described are listed without lag. None when the listing
    itself fails: the last known groups stay in status."""
    try:
        summaries = ctx.primary.groups()
    except PrimaryError as e:
        log.debug("no consumer groups for topic %s: %s", topic, e)
        return None
    descriptions: dict[str, dict] = {}
    stop_at = time.monotonic() + GROUPS_DEADLINE_S
    for summary in sorted(summaries, key=lambda s: s["group"]):
        if topic not in (summary.get("topics") or ()):
            continue
        if len(descriptions) >= render_topic.MAX_STATUS_GROUPS or time.monotonic() >= stop_at:
            break
        try:
            descriptions[summary["group"]] = ctx.primary.group(summary["group"])
        except PrimaryRefused as e:  # deleted since the listing
            log.debug("group %s: %s", summary["group"], e)
        except PrimaryError as e:
            log.debug("group %s not described: %s", summary["group"], e)
            break
    return render_topic.topic_groups(topic, summaries, descriptions)


@metrics.reconciles("Topic")
def reconcile_topic(ctx: Context, namespace: str, name: str) -> tuple[bool, str] | None:
    """Create missing partitions and refresh status; returns (ready, reason), None when gone.

    Raises InvalidSpec for a bad spec, RetryLater when the primary is down or has no ready broker.
    """
    with ctx.locks.hold((TOPICS, namespace, name)):
        obj = ctx.kube.get_custom(TOPICS, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None
        problems = render_topic.topic_spec_problems(obj)
        if problems:
            _write(ctx, obj, render_conditions.invalid_status(obj, problems, ctx.now(), phase=None))
            raise InvalidSpec("; ".join(problems))
        topic = render_topic.topic_name(obj)
        desired = (obj.get("spec") or {}).get("partitions", 1)

        def fail(reason: ConditionReason, message: str, delay: float) -> RetryLater:
            _write(
                ctx,
                obj,
                render_topic.topic_status(obj, topic, ctx.now(), ready=False, reason=reason, message=message),
            )
            return RetryLater(message, delay)

        def primary_down(error: PrimaryUnavailable) -> RetryLater:
            return fail(
                ConditionReason.PRIMARY_UNAVAILABLE,
                f"the primary manager did not answer: {error}",
                ctx.config.retry_delay_s,
            )

        try:
            metadata = ctx.primary.metadata(topic)
        except PrimaryUnavailable as e:
            raise primary_down(e) from e
        existing = metadata.partitions(topic)
        plan = render_topic.plan_partitions(existing, desired)
        added: list[str] = []
        try:
            for partition in plan.add:
                if ctx.primary.add_partition(topic, partition):
                    added.append(partition)
        except PrimaryUnavailable as e:
            raise primary_down(e) from e
        except PrimaryRefused as e:
            if e.reason == Reason.NO_BROKER.value:
                raise fail(
                    ConditionReason.NO_READY_BROKER,
                    f"no ready broker to place partitions on: {e.message}",
                    ctx.config.retry_delay_s,
                ) from e
            raise fail(
                ConditionReason.CREATE_REFUSED, f"the primary refused a partition: {e}", ctx.config.resync_s
            ) from e
        finally:
            if added:
                ctx.events(
                    obj,
                    "Normal",
                    "PartitionsAdded",
                    f"created {', '.join(added)} of topic {topic} through the primary manager",
                )
        if added:
            try:
                metadata = ctx.primary.metadata(topic)
            except PrimaryUnavailable as e:
                raise primary_down(e) from e
        wanted = render_topic.topic_config(obj)
        config = metadata.config(topic)
        if (existing or added) and "config" in (obj.get("spec") or {}):  # no spec.config: not managed here
            if config != wanted:
                try:
                    config = ctx.primary.set_topic_config(topic, wanted)
                except PrimaryUnavailable as e:
                    raise primary_down(e) from e
                except PrimaryRefused as e:
                    raise fail(
                        ConditionReason.CREATE_REFUSED,
                        f"the primary refused the configuration: {e}",
                        ctx.config.resync_s,
                    ) from e
                ctx.events(
                    obj, "Normal", "ConfigApplied", f"topic {topic} configuration: {config or 'defaults'}"
                )
        logs = log_offsets(ctx, metadata, topic)
        offsets = {p: (None if v is None else v[1]) for p, v in logs.items()}
        starts = {p: (None if v is None else v[0]) for p, v in logs.items()}
        wire = metadata.to_json()  # render's topic functions read the view's JSON form
        ready, reason, message = render_topic.topic_readiness(wire, topic, desired, plan)
        status = render_topic.topic_status(
            obj,
            topic,
            ctx.now(),
            ready=ready,
            reason=reason,
            message=message,
            partitions=render_topic.topic_partitions(wire, topic, offsets, starts),
            groups=group_lags(ctx, topic),
            config=config,
        )
        _write(ctx, obj, status)
        return ready, reason


@metrics.reconciles("Topic", "finalize")
def finalize_topic(ctx: Context, topic_obj: Mapping) -> str:
    """A Topic CR is being deleted. ``spec.deletionPolicy: Retain`` (the default): the topic, its
    partitions and their data stay in the managers (and keep working through the HTTP API and the
    client); an Event says so and the CR goes at once. ``Delete``: the topic is deleted through the
    primary (``DELETE /v1/topics/<name>``: partitions, data, positions, both stores) and only then
    does the finalizer go; while the primary does not answer or refuses, RetryLater keeps the
    finalizer (kopf retries), so the resource never disappears with its topic still there."""
    meta = topic_obj["metadata"]
    topic = render_topic.topic_name(topic_obj)
    if render_topic.deletion_policy(topic_obj) != "Delete":
        ctx.locks.forget((TOPICS, meta["namespace"], meta["name"]))
        message = f"Topic resource deleted; topic {topic} and its data are kept (spec.deletionPolicy: Retain)"
        ctx.events(topic_obj, "Normal", "TopicKept", message)
        return message
    try:
        existed = ctx.primary.delete_topic(topic)
    except PrimaryUnavailable as e:
        raise RetryLater(
            f"could not delete topic {topic}: the primary did not answer: {e}", ctx.config.retry_delay_s
        ) from e
    except PrimaryRefused as e:
        raise RetryLater(f"the primary refused to delete topic {topic}: {e}", ctx.config.retry_delay_s) from e
    ctx.locks.forget((TOPICS, meta["namespace"], meta["name"]))
    message = (
        f"Topic resource deleted; topic {topic}, its partitions and their data deleted (spec.deletionPolicy: Delete)"
        if existed
        else f"Topic resource deleted; topic {topic} did not exist in the managers any more"
    )
    ctx.events(topic_obj, "Normal", "TopicDeleted", message)
    return message
