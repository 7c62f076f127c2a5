"""The console's consumer-groups page: one group's position and lag on each partition of a topic."""

from flask import request
from flask.typing import ResponseReturnValue

from myqueue.core.names import validate_group, validate_partition, validate_topic
from myqueue.core.refusal import Refusal
from myqueue.core.view import ClusterView

from .context import ConsoleContext
from .data import BrokerDown, ClusterReader


def groups(c: ConsoleContext) -> ResponseReturnValue:
    view = c.current_view()
    if view is None:
        return c.unavailable()
    topic_arg, group_arg = request.args.get("topic", ""), request.args.get("group", "")
    rows: list[dict] = []
    error = None
    if topic_arg or group_arg:
        try:
            topic_name, group = validate_topic(topic_arg), validate_group(group_arg)
        except Refusal as e:
            topic_name, group, error = "", "", e.message
        if topic_name and topic_name not in view.topics:
            error = f"no topic {topic_name}"
        elif topic_name:
            rows = _positions(c.reader, view, topic_name, group)
    return c.page(
        "groups.html",
        title="Consumer groups",
        topics=sorted(view.topics),
        topic=topic_arg,
        group=group_arg,
        rows=rows,
        error=error,
    )


def _positions(reader: ClusterReader, view: ClusterView, topic: str, group: str) -> list[dict]:
    rows = []
    for placement in sorted(view.topics[topic], key=lambda p: p.partition):
        partition = validate_partition(placement.partition)
        row: dict = {
            "partition": partition,
            "broker": placement.broker,
            "position": None,
            "end": None,
            "lag": None,
            "error": None,
        }
        broker = view.broker_for(topic, partition)
        if broker is None:
            row["error"] = "no broker"
        else:
            try:
                position, end = reader.position(broker.address, topic, partition, group)
                row.update(
                    position=position, end=end, lag=None if position is None else max(0, end - position)
                )
            except BrokerDown as e:
                row["error"] = f"broker down: {e}"
        rows.append(row)
    return rows


ROUTES = (("/groups", "groups", "GET", groups),)
