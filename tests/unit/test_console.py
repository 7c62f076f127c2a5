"""The console's pure parts: session cookies, value rendering, produce-rate sampling."""

import json

from myqueue.manager.console.data import PartitionRow, Sampler
from myqueue.manager.console.session import Sessions
from myqueue.manager.console.views import SHOWN_BYTES, _render, hexdump, printable


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
    assert not sessions.token_matches("wrong") and not sessions.token_matches("") and not sessions.token_matches("righ")


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
    sampler.add([PartitionRow("T", "P1", "b0", True, end_offset=0), PartitionRow("T", "P2", "b1", True, end_offset=5)])
    sampler.add([PartitionRow("T", "P1", "b0", True, end_offset=10), PartitionRow("T", "P2", "b1", True, end_offset=2)])
    series = sampler.series()
    assert series["samples"] == 2
    ((_, rate),) = series["topics"]["T"]
    assert rate > 0 and series["partitions"]["T"]["P2"] == 0  # a partition that restarted at 0: no negative rate
    assert series["partitions"]["T"]["P1"] == rate
