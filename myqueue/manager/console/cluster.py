"""The console's cluster pages: the brokers and where the partitions are, the topics, one topic."""

from flask import abort, redirect, url_for
from flask.typing import ResponseReturnValue

from .context import ConsoleContext


def index(c: ConsoleContext) -> ResponseReturnValue:
    return redirect(url_for("console.cluster"), 303)


def cluster(c: ConsoleContext) -> ResponseReturnValue:
    view = c.current_view()
    if view is None:
        return c.unavailable()
    brokers, rows = c.snapshot(view)
    placed: dict[str, list[str]] = {b.name: [] for b in brokers}
    unplaced = []
    for row in rows:
        if row.broker in placed:
            placed[row.broker].append(f"{row.topic}:{row.partition}")
        else:
            unplaced.append(f"{row.topic}:{row.partition}")
    ready, detail = c.replica.ready()
    return c.page(
        "cluster.html",
        title="Cluster",
        brokers=brokers,
        placed=placed,
        unplaced=unplaced,
        view_version=view.version,
        replica_ready=ready,
        replica_detail=detail,
    )


def topics(c: ConsoleContext) -> ResponseReturnValue:
    view = c.current_view()
    if view is None:
        return c.unavailable()
    brokers, rows = c.snapshot(view)
    summary = []
    for name in sorted(view.topics):
        parts = [r for r in rows if r.topic == name]
        known = [r.end_offset for r in parts if r.end_offset is not None]
        summary.append(
            {
                "topic": name,
                "partitions": len(parts),
                "brokers": sorted({r.broker for r in parts if r.broker}),
                "end_offsets": sum(known),
                "complete": len(known) == len(parts),
            }
        )
    return c.page(
        "topics.html", title="Topics", topics=summary, brokers_down=[b for b in brokers if not b.up]
    )


def topic(c: ConsoleContext, topic: str) -> ResponseReturnValue:
    view = c.current_view()
    if view is None:
        return c.unavailable()
    if topic not in view.topics:
        abort(404)
    brokers, rows = c.snapshot(view, topic)
    return c.page(
        "topic.html", title=f"Topic {topic}", topic=topic, rows=rows, brokers={b.name: b for b in brokers}
    )


ROUTES = (
    ("/", "index", "GET", index),
    ("/cluster", "cluster", "GET", cluster),
    ("/topics", "topics", "GET", topics),
    ("/topics/<topic>", "topic", "GET", topic),
)
