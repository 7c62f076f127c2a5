"""The console's routes: GET pages and one JSON endpoint, plus the login and logout forms.

Every page route is GET and changes nothing. Login and logout are POSTs of a form: the service
guard in front (service/guard.py) refuses them cross-site (Origin / Sec-Fetch-Site), and they
change only the browser's cookie. Every answer carries a strict Content-Security-Policy (scripts
and styles only from the console's own static files, no inline code, no framing).
"""

import json
import threading
import time
import unicodedata

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for

from myqueue.core.names import validate_group, validate_partition, validate_topic
from myqueue.core.refusal import Refusal
from myqueue.core.view import ClusterView
from myqueue.manager.replica import Replica
from myqueue.service.auth import authorized

from .data import SAMPLE_MIN_INTERVAL_S, BrokerDown, ClusterReader, Sampler
from .session import COOKIE, Sessions

PREFIX = "/console"
DEFAULT_LIMIT = 20
MAX_LIMIT = 200
SHOWN_BYTES = 4096  # of each record's value; the size of the whole value is shown beside it
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
OPEN_ENDPOINTS = frozenset({"console.login", "console.login_form", "console.static"})
FORMATS = ("text", "json", "hex")


def console_blueprint(replica: Replica, token: str | None) -> Blueprint:
    bp = Blueprint("console", __name__, template_folder="templates", static_folder="static")
    reader = ClusterReader(token)
    sampler = Sampler()
    sessions = Sessions(token) if token else None

    @bp.before_request
    def _authenticate():
        if sessions is None or request.endpoint in OPEN_ENDPOINTS:
            return None
        if token and authorized(request.headers.get("Authorization"), token):
            return None
        if sessions.valid(request.cookies.get(COOKIE)):
            return None
        if request.path.startswith("/api/"):
            return jsonify(
                status="failure", message="log in to the console first", reason="UNAUTHORIZED"
            ), 401
        return redirect(url_for("console.login_form"), 303)

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        # Not no-referrer: with it a browser sends "Origin: null" on form posts, which the guard refuses.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        if request.endpoint != "console.static":
            response.headers["Cache-Control"] = "no-store"
        return response

    def page(template: str, status: int = 200, **context) -> tuple[str, int]:
        context.setdefault("auth_on", sessions is not None)
        context.setdefault("primary_reachable", replica.primary_reachable)
        return render_template(template, **context), status

    def current_view() -> ClusterView | None:
        try:
            return replica.cluster_view()
        except Refusal:
            return None

    def unavailable() -> tuple[str, int]:
        return page("unavailable.html", 503, title="No cluster view yet")

    recent: dict = {}  # the last whole-cluster snapshot: at most one round of broker calls a second
    recent_lock = threading.Lock()

    def snapshot(view: ClusterView, topic: str | None = None):
        with recent_lock:
            cached = recent.get("snapshot")
            if cached and cached[0] == view.version and time.monotonic() - cached[1] < SAMPLE_MIN_INTERVAL_S:
                brokers, rows = cached[2], cached[3]
                return brokers, rows if topic is None else [r for r in rows if r.topic == topic]
        brokers = reader.brokers(view)
        rows = reader.partitions(view, brokers)
        with recent_lock:
            recent["snapshot"] = (view.version, time.monotonic(), brokers, rows)
        if sampler.due():
            sampler.add(rows)
        return brokers, rows if topic is None else [r for r in rows if r.topic == topic]

    # --- login ----------------------------------------------------------------------------------
    @bp.get("/login")
    def login_form():
        return page("login.html", title="Log in", error=None)

    @bp.post("/login")
    def login():
        if sessions is None:
            return redirect(url_for("console.cluster"), 303)
        given = request.form.get("token", "")
        if not given or not sessions.token_matches(given):
            return page("login.html", 401, title="Log in", error="wrong token")
        response = redirect(url_for("console.cluster"), 303)
        response.set_cookie(
            COOKIE,
            sessions.issue(),
            max_age=sessions.lifetime_s,
            path=request.script_root or "/",
            secure=request.is_secure,
            httponly=True,
            samesite="Strict",
        )
        return response

    @bp.post("/logout")
    def logout():
        response = redirect(url_for("console.login_form"), 303)
        if sessions is not None:
            sessions.revoke(request.cookies.get(COOKIE))
            response.delete_cookie(COOKIE, path=request.script_root or "/", httponly=True, samesite="Strict")
        return response

    # --- pages ------------------------------------------------------------------------------------
    @bp.get("/")
    def index():
        return redirect(url_for("console.cluster"), 303)

    @bp.get("/cluster")
    def cluster():
        view = current_view()
        if view is None:
            return unavailable()
        brokers, rows = snapshot(view)
        placed: dict[str, list[str]] = {b.name: [] for b in brokers}
        unplaced = []
        for row in rows:
            if row.broker in placed:
                placed[row.broker].append(f"{row.topic}:{row.partition}")
            else:
                unplaced.append(f"{row.topic}:{row.partition}")
        ready, detail = replica.ready()
        return page(
            "cluster.html",
            title="Cluster",
            brokers=brokers,
            placed=placed,
            unplaced=unplaced,
            view_version=view.version,
            replica_ready=ready,
            replica_detail=detail,
        )

    @bp.get("/topics")
    def topics():
        view = current_view()
        if view is None:
            return unavailable()
        brokers, rows = snapshot(view)
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
        return page(
            "topics.html", title="Topics", topics=summary, brokers_down=[b for b in brokers if not b.up]
        )

    @bp.get("/topics/<topic>")
    def topic(topic: str):
        view = current_view()
        if view is None:
            return unavailable()
        if topic not in view.topics:
            abort(404)
        brokers, rows = snapshot(view, topic)
        return page(
            "topic.html", title=f"Topic {topic}", topic=topic, rows=rows, brokers={b.name: b for b in brokers}
        )

    @bp.get("/topics/<topic>/<partition>/records")
    def records(topic: str, partition: str):
        view = current_view()
        if view is None:
            return unavailable()
        if not view.has_partition(topic, partition):
            abort(404)
        offset = _int_arg("offset", 0, 0, 2**62)
        limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        shown = request.args.get("format", "text")
        if shown not in FORMATS:
            shown = "text"
        owner, broker = view.owner(topic, partition), view.broker_for(topic, partition)
        error, result = None, None
        if broker is None:
            error = "the partition has no broker right now"
        else:
            try:
                result = reader.fetch(broker.address, topic, partition, offset, limit)
            except BrokerDown as e:
                error = f"broker {owner} did not answer: {e}"
        rendered = [] if result is None else [_render(r.offset, r.value, shown) for r in result.records]
        return page(
            "records.html",
            title=f"{topic}:{partition} records",
            topic=topic,
            partition=partition,
            broker=owner,
            offset=offset,
            limit=limit,
            shown=shown,
            formats=FORMATS,
            result=result,
            records=rendered,
            error=error,
            latest=None if result is None else max(0, result.end_offset - limit),
        )

    @bp.get("/groups")
    def groups():
        view = current_view()
        if view is None:
            return unavailable()
        topic_arg, group_arg = request.args.get("topic", ""), request.args.get("group", "")
        rows, error = [], None
        if topic_arg or group_arg:
            try:
                topic_name, group = validate_topic(topic_arg), validate_group(group_arg)
            except Refusal as e:
                topic_name, group, error = "", "", e.message
            if topic_name and topic_name not in view.topics:
                error = f"no topic {topic_name}"
            elif topic_name:
                rows = _positions(reader, view, topic_name, group)
        return page(
            "groups.html",
            title="Consumer groups",
            topics=sorted(view.topics),
            topic=topic_arg,
            group=group_arg,
            rows=rows,
            error=error,
        )

    @bp.get("/throughput")
    def throughput():
        view = current_view()
        if view is None:
            return unavailable()
        return page("throughput.html", title="Throughput", topics=sorted(view.topics))

    @bp.get("/api/throughput")
    def throughput_data():
        view = current_view()
        if view is None:
            return jsonify(status="failure", message="no cluster view yet", reason="UNAVAILABLE"), 503
        brokers, rows = snapshot(view)
        return jsonify(
            now=round(time.time(), 3),
            primary_reachable=replica.primary_reachable,
            brokers={b.name: b.up for b in brokers},
            end_offsets={f"{r.topic}:{r.partition}": r.end_offset for r in rows},
            **sampler.series(),
        )

    return bp


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        abort(400, f"{name} must be an integer")
    return min(max(number, low), high)


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


def _render(offset: int, value: bytes, shown: str) -> dict:
    head = value[:SHOWN_BYTES]
    record: dict[str, object] = {
        "offset": offset,
        "size": len(value),
        "truncated": len(value) > SHOWN_BYTES,
        "note": None,
    }
    if shown == "hex":
        record["body"] = hexdump(head)
        return record
    text = head.decode("utf-8", errors="replace")
    if shown == "json":
        try:
            record["body"] = json.dumps(json.loads(value.decode("utf-8")), indent=2, ensure_ascii=False)[
                : SHOWN_BYTES * 4
            ]
            return record
        except (UnicodeDecodeError, ValueError, RecursionError):
            record["note"] = "not JSON: shown as text"
    record["body"] = printable(text)
    if "\ufffd" in text and shown == "text":
        record["note"] = "not valid UTF-8: undecodable bytes shown as \ufffd (see hex)"
    return record


def printable(text: str) -> str:
    """Text with control characters (other than newline and tab) shown as \\xNN escapes."""
    return "".join(
        c
        if c in "\n\t" or not unicodedata.category(c).startswith("C") or c == "\ufffd"
        else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        for c in text
    )


def hexdump(data: bytes, width: int = 16) -> str:
    lines = []
    for start in range(0, len(data), width):
        chunk = data[start : start + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        chars = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {hexes:<{width * 3 - 1}}  |{chars}|")
    return "\n".join(lines)


__all__ = ["PREFIX", "console_blueprint", "hexdump", "printable"]
