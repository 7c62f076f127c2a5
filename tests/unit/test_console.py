"""The console's pure parts: session cookies, value rendering, produce-rate sampling."""

import json

from myqueue.manager.app import create_app as create_manager_app
from myqueue.manager.brokers import BrokerClient
from myqueue.manager.console.data import PartitionRow, Sampler
from myqueue.manager.console.records import SHOWN_BYTES, _render, hexdump, printable
from myqueue.manager.console.session import Sessions
from myqueue.manager.launcher import NoLauncher
from myqueue.manager.primary import Primary
from myqueue.manager.replica import Replica
from myqueue.manager.store import MemoryMetaStore


def test_a_session_cookie_is_signed_with_a_key_from_the_token_and_never_holds_it():
    sessions = Sessions("s3cret-token")
    cookie = sessions.issue()
    assert sessions.valid(cookie)
    assert "s3cret-token" not in cookie
    expires, nonce, mac = cookie.split(".")
    assert not sessions.valid(f"{expires}.{nonce}.{'0' * len(mac)}")
    assert not sessions.valid(f"{int(expires) + 10}.{nonce}.{mac}")  # a longer life is not signed
    assert not Sessions("another-token").valid(cookie)  # a new token ends every session
    for junk in (None, "", "a.b", "x.y.z", "1.2.3.4", "9" * 300):
        assert not sessions.valid(junk)


def test_a_session_expires_and_logout_revokes_it():
    expired = Sessions("t", lifetime_s=-1)
    assert not expired.valid(expired.issue())
    sessions = Sessions("t")
    kept, dropped = sessions.issue(), sessions.issue()
    sessions.revoke(dropped)
    assert not sessions.valid(dropped) and sessions.valid(kept)


def test_token_comparison():
    sessions = Sessions("right")
    assert sessions.token_matches("right")
    assert (
        not sessions.token_matches("wrong")
        and not sessions.token_matches("")
        and not sessions.token_matches("righ")
    )


def test_values_render_as_text_json_or_hex_and_binary_stays_safe():
    assert _render(0, b"hello\x00\x1b[31m", "text")["body"] == "hello\\x00\\x1b[31m"
    broken = _render(1, b"\xff\xfeok", "text")
    assert broken["body"] == "\ufffd\ufffdok" and "UTF-8" in broken["note"]
    pretty = _render(2, b'{"a":[1,2]}', "json")
    assert pretty["body"] == json.dumps({"a": [1, 2]}, indent=2) and pretty["note"] is None
    assert _render(3, b"not json", "json")["note"] == "not JSON: shown as text"
    assert _render(4, b"\x00AB", "hex")["body"] == "00000000  00 41 42" + " " * 39 + "  |.AB|"
    big = _render(5, b"x" * (SHOWN_BYTES + 1), "text")
    assert big["truncated"] and len(big["body"]) == SHOWN_BYTES and big["size"] == SHOWN_BYTES + 1
    assert printable("a\tb\nc\u202e") == "a\tb\nc\\u202e"  # a bidi override is shown, not applied


def test_hexdump_lines():
    lines = hexdump(bytes(range(20))).splitlines()
    assert lines[0].startswith("00000000  00 01 02") and lines[0].endswith("|................|")
    assert lines[1].startswith("00000010  10 11 12 13")


def test_sampler_rates_from_consecutive_end_offsets():
    sampler = Sampler(min_interval_s=0)
    assert sampler.due()
    sampler.add(
        [PartitionRow("T", "P1", "b0", True, end_offset=0), PartitionRow("T", "P2", "b1", True, end_offset=5)]
    )
    sampler.add(
        [
            PartitionRow("T", "P1", "b0", True, end_offset=10),
            PartitionRow("T", "P2", "b1", True, end_offset=2),
        ]
    )
    series = sampler.series()
    assert series["samples"] == 2
    ((_, rate),) = series["topics"]["T"]
    assert (
        rate > 0 and series["partitions"]["T"]["P2"] == 0
    )  # a partition that restarted at 0: no negative rate
    assert series["partitions"]["T"]["P1"] == rate


# --- the console mounted on the managers' apps (Flask's test client: no network, no started threads) ---
def _apps(token=None):
    replica = Replica(MemoryMetaStore(), "http://127.0.0.1:1", BrokerClient())  # never started: no view
    replica_app, _ = create_manager_app("replica", replica=replica, token=token)
    primary_app, _ = create_manager_app(
        "primary", primary=Primary(MemoryMetaStore(), NoLauncher(), BrokerClient()), token=token
    )
    return replica_app.test_client(), primary_app.test_client()


def test_only_the_replica_serves_the_console_with_strict_headers():
    replica, primary = _apps()
    page = replica.get("/console/cluster")
    assert page.status_code == 503 and b"no cluster view" in page.data  # a replica that never synced
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["Cache-Control"] == "no-store"
    script = replica.get("/console/static/console.js")
    assert script.status_code == 200 and script.mimetype in ("text/javascript", "application/javascript")
    assert replica.post("/console/cluster").status_code == 405
    assert primary.get("/console/cluster").status_code == 404
    assert replica.get("/v1/metadata").status_code == 503  # the manager's own routes are untouched


def test_with_a_token_the_console_wants_a_login_and_its_cookie_opens_the_console_only():
    replica, _ = _apps(token="tok")
    assert replica.get("/console/cluster").status_code == 303
    assert replica.get("/console/api/throughput").status_code == 401
    assert replica.get("/console/login").status_code == 200
    assert replica.get("/console/static/console.css").status_code == 200
    assert replica.get("/console/cluster", headers={"Authorization": "Bearer tok"}).status_code == 503
    assert replica.post("/console/login", data={"token": "nope"}).status_code == 401
    answer = replica.post("/console/login", data={"token": "tok"})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/console/cluster")
    cookie = answer.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="):
        assert attribute in cookie, cookie
    assert "tok" not in cookie.split(";")[0].split("=", 1)[1]
    assert replica.get("/console/cluster").status_code == 503  # logged in: the page itself (no view yet)
    assert replica.get("/topics").status_code == 401  # the API never takes the cookie
    assert replica.post("/console/logout").status_code == 303
    assert replica.get("/console/cluster").status_code == 303
