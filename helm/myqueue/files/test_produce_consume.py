"""`helm test` of the myqueue chart: one message through the managers, on the seed's API.

Registers partition P1 of a fresh random topic on the primary (retried while the brokers are
still starting), waits until the replica serves it, registers a consumer on the replica and a
producer on the primary, produces one message and consumes it back. Standard library only: the
chart runs this file from the manager image as `python -c`, and
tests/integration/test_helm_test_script.py runs the same file against a local cluster.

Environment: PRIMARY_URL, REPLICA_URL (http://host:port), TIMEOUT_S (whole test), MYQUEUE_TOKEN
(sent as a bearer token when set: the chart's auth.enabled). Exits 0 when
the message came back; otherwise exits non-zero naming the step that failed and the last answer.
"""

# The URLs are the chart's own Services (http), given by the pod spec.
# ruff: noqa: S310

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def call(base: str, path: str, body: dict | None = None) -> dict:
    """One request; the seed's envelope as a dict, also for 4xx answers."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if os.environ.get("MYQUEUE_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MYQUEUE_TOKEN']}"
    request = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        return json.load(e)


def until(what: str, attempt, deadline: float, accept=("success",)) -> dict:
    """Repeat ``attempt()`` until its answer is accepted or the deadline passes (then exit 1)."""
    while True:
        try:
            answer = attempt()
        except (OSError, ValueError) as e:
            answer = {"status": "failure", "message": repr(e)}
        if answer.get("status") in accept or answer.get("reason") in accept:
            print(f"ok: {what}: {answer.get('message')!r}", flush=True)
            return answer
        if time.monotonic() > deadline:
            sys.exit(f"FAILED: {what}: {answer}")
        time.sleep(1)


def main() -> None:
    primary, replica = os.environ["PRIMARY_URL"].rstrip("/"), os.environ["REPLICA_URL"].rstrip("/")
    deadline = time.monotonic() + float(os.environ.get("TIMEOUT_S", "180"))
    topic, message = f"helmtest{secrets.randbelow(10**9)}", f"hello {secrets.token_hex(8)}"

    # A retry after a lost answer finds the partition already there: that is success too.
    until(
        "add partition P1",
        lambda: call(primary, "/topics/add", {"topic": topic, "part": "P1"}),
        deadline,
        accept=("success", "PARTITION_EXISTS"),
    )

    def replica_has_topic() -> dict:
        answer = call(replica, "/topics")
        if answer.get("status") == "success" and topic in answer["message"]:
            return answer
        return {"status": "waiting", "message": "the replica does not serve the topic yet"}

    until("replica serves the topic", replica_has_topic, deadline)
    consumer = until(
        "register consumer", lambda: call(replica, "/consumer/register", {"topic": topic}), deadline
    )["message"]
    producer = until(
        "register producer", lambda: call(primary, "/producer/register", {"topic": topic}), deadline
    )["message"]
    until(
        "produce",
        lambda: call(primary, "/producer/produce", {"producer_id": producer, "message": message}),
        deadline,
    )
    query = urllib.parse.urlencode({"consumer_id": consumer})
    got = until("consume", lambda: call(replica, f"/consumer/consume?{query}"), deadline)
    if got["message"] != message or got.get("topic") != f"{topic}:P1":
        sys.exit(f"FAILED: consumed {got!r}, expected {message!r} from {topic}:P1")
    print(f"PASSED: produced and consumed {message!r} through {topic}:P1", flush=True)


if __name__ == "__main__":
    main()
