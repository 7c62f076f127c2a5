"""The pool's response header parse (``net/pool.py`` ``_Response``) against the stock ``http.client``.

``_Response`` overrides ``HTTPResponse.begin`` (an internal of the standard library) to parse plain
``name: value`` headers without the ``email`` package. Each response form here is read twice over
a real socket pair, by the stock ``HTTPResponse`` and by ``_Response``, and everything the pool
and ``read()`` use must come out the same: status, reason, version, headers, chunked, length,
will_close, the body, or the same error. Every fallback to the ``email`` parser is hit and
counted. ``.ci/pythons`` runs this on every CPython the package claims (pyproject classifiers),
so a change to ``http.client``'s internals fails here, not in production.
"""

import email.parser
import http.client
import socket
import sys
import threading

import pytest

from myqueue.net import pool

CLAIMED = {"3.11", "3.12", "3.13"}  # pyproject.toml classifiers


def _read(cls: type[http.client.HTTPResponse], raw: bytes, method: str) -> tuple:
    """Everything observable about ``raw`` read by ``cls`` (or the error it raised)."""
    ours, theirs = socket.socketpair()
    writer = threading.Thread(
        target=lambda: (theirs.sendall(raw), theirs.shutdown(socket.SHUT_WR)), daemon=True
    )
    writer.start()
    try:
        response = cls(ours, method=method)
        try:
            response.begin()
            head = (
                response.status,
                response.reason,
                response.version,
                list(response.headers.items()),
                response.headers.get_all("Set-Cookie"),
                type(response.headers),
                response.chunked,
                response.length,
                response.will_close,
            )
            return (*head, response.read(), response.isclosed())
        except (http.client.HTTPException, OSError, ValueError) as e:
            return ("raised", type(e), str(e))
        finally:
            response.close()
    finally:
        writer.join(10)
        ours.close()
        theirs.close()


def read_both(raw: bytes, monkeypatch, method: str = "GET") -> tuple[tuple, tuple, int]:
    """(stock, ours, how many times ours fell back to the email parser)."""
    stock = _read(http.client.HTTPResponse, raw, method)
    calls = []
    parsestr = email.parser.Parser.parsestr

    def counting(self, text, headersonly=False):
        calls.append(text)
        return parsestr(self, text, headersonly)

    with monkeypatch.context() as patch:
        patch.setattr(email.parser.Parser, "parsestr", counting)
        ours = _read(pool._Response, raw, method)
    return stock, ours, len(calls)


OK = b"HTTP/1.1 200 OK\r\n"

# (id, raw response, method): every line a plain ``name: value``, so no email parser
FAST = [
    (
        "content-length",
        OK + b"Content-Length: 5\r\nX-MyQueue-End-Offset: 7\r\nContent-Type: text/plain; a=b\r\n\r\nhello",
        "GET",
    ),
    ("repeated-names", OK + b"Set-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n", "GET"),
    (
        "value-whitespace",
        OK + b"X-A:\t  v  \r\nX-B:\r\nX-C:v\r\nX-D: a:b: c\r\nContent-Length: 0\r\n\r\n",
        "GET",
    ),
    ("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\nok", "GET"),
    ("latin-1-value", OK + "X-Name: caf\u00e9\r\nContent-Length: 0\r\n\r\n".encode("iso-8859-1"), "GET"),
    ("no-headers", b"HTTP/1.1 204 No Content\r\n\r\n", "GET"),
    ("headers-end-at-eof", OK + b"X-A: 1\r\n", "GET"),
    ("http10-to-eof", b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nall of it", "GET"),
    ("http10-keep-alive", b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", "GET"),
    (
        "http10-keep-alive-header",
        b"HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
        "GET",
    ),
    ("connection-close", OK + b"Connection: close\r\nContent-Length: 3\r\n\r\nbye", "GET"),
    ("no-length-http11", OK + b"X-A: 1\r\n\r\nto the end", "GET"),
    ("chunked", OK + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", "GET"),
    ("chunked-mixed-case", OK + b"transfer-encoding: Chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n", "GET"),
    (
        "chunked-and-length",
        OK + b"Transfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n1\r\nz\r\n0\r\n\r\n",
        "GET",
    ),
    ("transfer-encoding-gzip", OK + b"Transfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok", "GET"),
    ("invalid-length", OK + b"Content-Length: abc\r\nConnection: close\r\n\r\nbody", "GET"),
    ("negative-length", OK + b"Content-Length: -1\r\nConnection: close\r\n\r\nbody", "GET"),
    ("not-modified", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET"),
    ("no-content-with-length", b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "GET"),
    ("head", OK + b"Content-Length: 10\r\n\r\n", "HEAD"),
    (
        "100-continue",
        b"HTTP/1.1 100 Continue\r\nX-Skipped: 1\r\n\r\n" + OK + b"Content-Length: 2\r\n\r\nok",
        "POST",
    ),
    (
        "two-100s",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n" + OK + b"Content-Length: 1\r\n\r\nz",
        "POST",
    ),
    ("103-early-hints", b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n", "GET"),
    ("reason-padding", b"HTTP/1.1 404  Not  Found  \r\nContent-Length: 0\r\n\r\n", "GET"),
    ("no-reason", b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET"),
    (
        "99-headers-the-most",
        OK + b"".join(b"X-%d: v\r\n" % i for i in range(98)) + b"Content-Length: 0\r\n\r\n",
        "GET",
    ),
    ("line-at-limit", OK + b"X-Long: " + b"a" * (65536 - 10) + b"\r\nContent-Length: 0\r\n\r\n", "GET"),
]

# every form the fast path hands to the email parser, as http.client would parse it
FALLBACK = [
    ("folded-space", OK + b"X-A: one\r\n two\r\nContent-Length: 0\r\n\r\n"),
    ("folded-tab", OK + b"X-A: one\r\n\ttwo\r\nContent-Length: 2\r\n\r\nok"),
    ("folded-first-line", OK + b" leading: continuation\r\nContent-Length: 0\r\n\r\n"),
    ("missing-colon", OK + b"Content-Length: 2\r\nnot a header line\r\n\r\nok"),
    ("space-in-name", OK + b"Bad Name: v\r\nContent-Length: 0\r\n\r\n"),
    ("space-before-colon", OK + b"X-A : v\r\nContent-Length: 0\r\n\r\n"),
    ("separator-in-name", OK + b"X(A): v\r\nContent-Length: 0\r\n\r\n"),
    ("empty-name", OK + b": v\r\nContent-Length: 0\r\n\r\n"),
    ("non-ascii-name", OK + "X-Caf\u00e9: v\r\nContent-Length: 0\r\n".encode("iso-8859-1") + b"\r\n"),
    (
        "fallback-keeps-chunked",
        OK + b"Transfer-Encoding: chunked\r\nX-A: a\r\n b\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ),
    ("fallback-keeps-close", b"HTTP/1.0 200 OK\r\nX-A: a\r\n b\r\n\r\nuntil eof"),
]

# the same errors as http.client, from the same limits
ERRORS = [
    ("line-over-limit", OK + b"X-Long: " + b"a" * 65536 + b"\r\n\r\n", http.client.LineTooLong),
    (
        "101-headers",
        OK + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
        http.client.HTTPException,
    ),
    (
        "100-headers-then-blank",
        OK + b"".join(b"X-%d: v\r\n" % i for i in range(100)) + b"\r\n",
        http.client.HTTPException,
    ),
    (
        "long-line-in-100-continue",
        b"HTTP/1.1 100 Continue\r\nX: " + b"a" * 65536 + b"\r\n\r\n" + OK + b"\r\n",
        http.client.LineTooLong,
    ),
    ("unknown-protocol", b"HTTP/2.0 200 OK\r\n\r\n", http.client.UnknownProtocol),
    ("bad-status-line", b"garbage\r\n\r\n", http.client.BadStatusLine),
    ("nothing", b"", http.client.RemoteDisconnected),
]


@pytest.mark.parametrize(("raw", "method"), [pytest.param(raw, m, id=i) for i, raw, m in FAST])
def test_plain_headers_are_read_without_the_email_parser_as_http_client_reads_them(raw, method, monkeypatch):
    stock, ours, fallbacks = read_both(raw, monkeypatch, method)
    assert stock[0] != "raised", stock
    assert ours == stock
    assert fallbacks == 0


@pytest.mark.parametrize("raw", [pytest.param(raw, id=i) for i, raw in FALLBACK])
def test_every_other_header_form_goes_to_the_email_parser_as_http_client_does(raw, monkeypatch):
    stock, ours, fallbacks = read_both(raw, monkeypatch)
    assert stock[0] != "raised", stock
    assert ours == stock
    assert fallbacks == 1


@pytest.mark.parametrize(("raw", "error"), [pytest.param(raw, e, id=i) for i, raw, e in ERRORS])
def test_limits_and_bad_responses_raise_what_http_client_raises(raw, error, monkeypatch):
    stock, ours, _ = read_both(raw, monkeypatch)
    assert stock[:2] == ("raised", error), stock
    assert ours == stock


def test_parse_headers_matches_http_client_on_every_fast_case():
    """The public-facing ``pool.parse_headers`` against ``http.client.parse_headers`` directly."""
    import io

    for case, raw, _ in FAST:
        head = raw.split(b"\n", 1)[1]
        if raw.startswith(b"HTTP/1.1 100"):
            continue  # two header blocks: begin's business, covered above
        stock, ours = http.client.parse_headers(io.BytesIO(head)), pool.parse_headers(io.BytesIO(head))
        assert list(ours.items()) == list(stock.items()), case


def test_the_fast_parse_is_in_use_on_this_python():
    """On every claimed Python the pool's connections use ``_Response``, not the stock fallback."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version not in CLAIMED:
        pytest.skip(f"Python {version} is not among the claimed {sorted(CLAIMED)}")
    assert pool.RESPONSE_CLASS is pool._Response
    assert pool._Connection.response_class is pool._Response
    assert pool._HTTPSConnection.response_class is pool._Response


def test_the_claimed_pythons_are_the_classifiers():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    listed = {
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if c.startswith("Programming Language :: Python :: 3.")
    }
    assert listed == CLAIMED
    assert project["requires-python"] == f">={min(CLAIMED, key=lambda v: tuple(map(int, v.split('.'))))}"
