"""Guard.refusal: what the server refuses from the headers alone (token, body limits), before any body."""

from myqueue.service.guard import Guard


def environ(path: str, method: str = "POST", length: int | None = None, auth: str | None = None) -> dict:
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "HTTP_HOST": "127.0.0.1"}
    if length is not None:
        env["CONTENT_LENGTH"] = str(length)
    if auth is not None:
        env["HTTP_AUTHORIZATION"] = auth
    return env


GUARD = Guard(
    None,
    None,
    token="t0ken",
    max_body=1000,
    seed_paths=("/topics/add",),
    own_auth={"/console": 100},
)


def test_the_token_is_asked_everywhere_but_the_probes_and_a_self_authenticating_mount():
    refusal = GUARD.refusal(environ("/v1/topics"))
    assert refusal is not None and (refusal.status, refusal.reason.value) == (401, "UNAUTHORIZED")
    assert GUARD.refusal(environ("/v1/topics", auth="Bearer t0ken")) is None
    assert GUARD.refusal(environ("/v1/topics", auth="Bearer wrong")) is not None
    assert GUARD.refusal(environ("/healthz", method="GET")) is None
    assert GUARD.refusal(environ("/console/login", length=20)) is None  # the console checks its cookie itself
    assert GUARD.refusal(environ("/console", method="GET")) is None
    assert GUARD.refusal(environ("/consoles", method="GET")) is not None  # a prefix is a path segment


def test_body_limits_come_from_the_headers_and_each_mount_has_its_own():
    over = GUARD.refusal(environ("/v1/topics", length=1001, auth="Bearer t0ken"))
    assert over is not None and (over.status, over.reason.value) == (413, "TOO_LARGE")
    seed = GUARD.refusal(environ("/topics/add", length=1001, auth="Bearer t0ken"))
    assert seed is not None and seed.status == 400  # the seed's contract: every refusal 400
    assert GUARD.refusal(environ("/v1/topics", length=1000, auth="Bearer t0ken")) is None
    console = GUARD.refusal(environ("/console/login", length=101))
    assert console is not None and console.status == 413 and "100-byte" in console.message


def test_without_a_token_nobody_is_asked_for_one():
    assert Guard(None, None, max_body=10).refusal(environ("/v1/topics", length=5)) is None
