"""Every refusal path answers 4xx with a JSON reason, and leaves the cluster unchanged."""

import requests

from myqueue.core import defaults
from tests.integration.seedcalls import Seed

BAD_NAMES = [
    "T-1",
    "T@1",
    "Tx1",
    "T*",
    "T|1",
    "T:1",
    "subl",
    "publ",
    "",
    "Tö",
    "T\x01",
    "T 1",
    "Z" * 65,
    7,
    None,
]


def snapshot(seed: Seed, consumer: int) -> dict:
    meta = seed.metadata(seed.p)
    brokers = {
        name: seed.ok(seed.http.get(info["address"] + "/v1/partitions", timeout=10))["partitions"]
        for name, info in meta["brokers"].items()
    }
    return {
        "version": meta["version"],
        "topics": meta["topics"],
        "brokers": brokers,
        "size": seed.ok(seed.get(seed.r, "/size", consumer_id=consumer)),
    }


def bad_requests(seed: Seed, broker: str) -> list[tuple[str, str, dict, int, str]]:
    p, r, b = seed.p, seed.r, broker
    big = "a" * (defaults.MAX_MESSAGE_BYTES + 1)
    cases = [
        # --- primary, the seed's endpoints: every refusal is a 400 -------------------------------------------------
        ("POST", p + "/topics/add", {"data": "{not json"}, 400, "INVALID_REQUEST"),
        ("POST", p + "/topics/add", {"json": [1, 2]}, 400, "INVALID_REQUEST"),
        ("POST", p + "/topics/add", {"json": {"topic": "T1"}}, 400, "INVALID_REQUEST"),
        (
            "POST",
            p + "/topics/add",
            {"json": {"topic": "T1", "part": "P1", "extra": 1}},
            400,
            "INVALID_REQUEST",
        ),
        ("POST", p + "/topics/add", {"json": {"topic": "T1", "part": "P1"}}, 400, "PARTITION_EXISTS"),
        ("POST", p + "/topics/add", {"data": "x" * (defaults.MAX_JSON_BODY_BYTES + 10)}, 400, "TOO_LARGE"),
        ("POST", p + "/producer/register", {"json": {"topic": "T9"}}, 400, "TOPIC_NOT_FOUND"),
        (
            "POST",
            p + "/producer/produce",
            {"json": {"producer_id": 999, "message": "m"}},
            400,
            "PRODUCER_NOT_FOUND",
        ),
        (
            "POST",
            p + "/producer/produce",
            {"json": {"producer_id": -1, "message": "m"}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            p + "/producer/produce",
            {"json": {"producer_id": "0", "message": "m"}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            p + "/producer/produce",
            {"json": {"producer_id": 0.5, "message": "m"}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            p + "/producer/produce",
            {"json": {"producer_id": True, "message": "m"}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            p + "/producer/produce",
            {"json": {"producer_id": 2**40, "message": "m"}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            p + "/producer/produce",
            {"json": {"producer_id": 0, "message": ""}},
            400,
            "INVALID_REQUEST",
        ),
        ("POST", p + "/producer/produce", {"json": {"producer_id": 0, "message": 5}}, 400, "INVALID_REQUEST"),
        ("POST", p + "/producer/produce", {"json": {"producer_id": 0, "message": big}}, 400, "TOO_LARGE"),
        ("POST", p + "/producer/produce", {"json": {"producer_id": 0}}, 400, "INVALID_REQUEST"),
        ("GET", p + "/brokers/add", {}, 400, "INVALID_REQUEST"),
        ("GET", p + "/brokers/add", {"params": {"broker_name": "node1"}}, 400, "INVALID_NAME"),
        ("GET", p + "/brokers/add", {"params": {"broker_name": "broker_1"}}, 400, "INVALID_NAME"),
        ("GET", p + "/brokers/add", {"params": {"broker_name": "broker0"}}, 400, "BROKER_EXISTS"),
        ("GET", p + "/brokers/rm", {"params": {"broker_name": "broker9"}}, 400, "BROKER_NOT_FOUND"),
        ("GET", p + "/brokers/test", {"params": {"broker_name": "broker9"}}, 400, "BROKER_NOT_FOUND"),
        ("POST", p + "/consumer/register", {"json": {"topic": "T1"}}, 400, "NOT_REPLICA"),
        ("GET", p + "/nope", {}, 404, "NOT_FOUND"),
        ("DELETE", p + "/topics", {}, 405, "METHOD_NOT_ALLOWED"),
        ("GET", p + "/v1/view", {"params": {"wait": "99"}}, 400, "INVALID_REQUEST"),
        (
            "POST",
            p + "/v1/brokers",
            {"json": {"name": "broker5", "address": "ftp://x"}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            p + "/v1/brokers",
            {"json": {"name": "nobrk", "address": "http://127.0.0.1:1"}},
            400,
            "INVALID_NAME",
        ),
        ("DELETE", p + "/v1/brokers/broker9", {}, 404, "BROKER_NOT_FOUND"),
        # --- replica ----------------------------------------------------------------------------------------------
        ("POST", r + "/consumer/register", {"json": {"topic": "T9"}}, 400, "TOPIC_NOT_FOUND"),
        (
            "POST",
            r + "/consumer/register",
            {"json": {"topic": "T1", "part": "P9"}},
            400,
            "PARTITION_NOT_FOUND",
        ),
        ("GET", r + "/consumer/consume", {}, 400, "INVALID_REQUEST"),
        ("GET", r + "/consumer/consume", {"params": {"consumer_id": "-1"}}, 400, "INVALID_REQUEST"),
        ("GET", r + "/consumer/consume", {"params": {"consumer_id": "1e3"}}, 400, "INVALID_REQUEST"),
        ("GET", r + "/consumer/consume", {"params": {"consumer_id": "99"}}, 400, "CONSUMER_NOT_FOUND"),
        ("GET", r + "/size", {"params": {"consumer_id": "abc"}}, 400, "INVALID_REQUEST"),
        ("GET", r + "/size", {"params": {"consumer_id": "99999999999"}}, 400, "INVALID_REQUEST"),
        ("POST", r + "/topics/add", {"json": {"topic": "T2", "part": "P1"}}, 400, "NOT_PRIMARY"),
        ("GET", r + "/v1/view", {}, 421, "NOT_PRIMARY"),
        # --- broker -----------------------------------------------------------------------------------------------
        ("POST", b + "/v1/partitions/T1/P1/records", {"data": b""}, 400, "INVALID_REQUEST"),
        ("POST", b + "/v1/partitions/T1/P1/records", {"data": b"garbage-garbage"}, 400, "INVALID_REQUEST"),
        ("POST", b + "/v1/partitions/T1/P1/records", {"data": b"MQB1\xff\xff\xff\xff"}, 413, "TOO_LARGE"),
        (
            "POST",
            b + "/v1/partitions/T1/P1/records",
            {"data": b"MQB1\x01\x00\x00\x00\x05\x00\x00\x00ab"},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            b + "/v1/partitions/T9/P9/records",
            {"data": b"MQB1\x01\x00\x00\x00\x01\x00\x00\x00a"},
            421,
            "NOT_HERE",
        ),
        ("PUT", b + "/v1/partitions/T-1/P1", {}, 400, "INVALID_NAME"),
        ("GET", b + "/v1/partitions/T1/P1/records", {}, 400, "INVALID_REQUEST"),
        ("GET", b + "/v1/partitions/T1/P1/records", {"params": {"offset": "-1"}}, 400, "INVALID_REQUEST"),
        (
            "GET",
            b + "/v1/partitions/T1/P1/records",
            {"params": {"offset": "0", "max_records": "0"}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "GET",
            b + "/v1/partitions/T1/P1/records",
            {"params": {"offset": "0", "wait_ms": "999999"}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "PUT",
            b + "/v1/partitions/T1/P1/positions/g1",
            {"json": {"offset": 1, "at": "latest"}},
            400,
            "INVALID_REQUEST",
        ),
        ("PUT", b + "/v1/partitions/T1/P1/positions/g1", {"json": {}}, 400, "INVALID_REQUEST"),
        ("PUT", b + "/v1/partitions/T1/P1/positions/g1", {"json": {"at": "middle"}}, 400, "INVALID_REQUEST"),
        ("PUT", b + "/v1/partitions/T1/P1/positions/g1", {"json": {"offset": -1}}, 400, "INVALID_REQUEST"),
        ("PUT", b + "/v1/partitions/T1/P1/positions/g1", {"json": {"offset": "5"}}, 400, "INVALID_REQUEST"),
        ("PUT", b + "/v1/partitions/T1/P1/positions/g%20x", {"json": {"offset": 0}}, 400, "INVALID_NAME"),
        (
            "POST",
            b + "/v1/partitions/T1/P1/positions/g1/take",
            {"json": {"max_records": 0}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            b + "/v1/partitions/T1/P1/positions/g1/take",
            {"json": {"max_records": "1"}},
            400,
            "INVALID_REQUEST",
        ),
        ("POST", b + "/v1/partitions/T1/P1/positions/g1/take", {"data": "[]"}, 400, "INVALID_REQUEST"),
        (
            "POST",
            b + "/v1/partitions/T1/P1/positions/g1/take",
            {"json": {"take_id": "a b"}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            b + "/v1/partitions/T1/P1/positions/g1/take",
            {"json": {"take_id": 5}},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            b + "/v1/partitions/T1/P1/records?request_id=" + "r" * 65,
            {"data": b"MQB1\x01\x00\x00\x00\x01\x00\x00\x00a"},
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            b + "/v1/partitions/T1/P1/records?request_id=r1&producer_id=p&sequence=0",
            {"data": b"MQB1\x01\x00\x00\x00\x01\x00\x00\x00a"},
            400,
            "INVALID_REQUEST",
        ),
    ]
    for name in BAD_NAMES:
        cases.append(("POST", p + "/topics/add", {"json": {"topic": name, "part": "P1"}}, 400, None))
        cases.append(("POST", p + "/topics/add", {"json": {"topic": "T1", "part": name}}, 400, None))
        cases.append(("POST", p + "/producer/register", {"json": {"topic": name, "part": "P1"}}, 400, None))
        cases.append(("POST", r + "/consumer/register", {"json": {"topic": name}}, 400, None))
    return cases


def test_every_refusal_is_json_4xx_and_changes_nothing(local_cluster):
    with local_cluster(store="memory", brokers=2) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        seed.add_partition("T1", "P1")
        producer = seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1", "part": "P1"}))
        seed.ok(seed.post(seed.p, "/producer/produce", {"producer_id": producer, "message": "before"}))
        seed.wait_replica_synced()
        consumer = seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1"}))
        seed.ok(seed.post(seed.p, "/producer/produce", {"producer_id": producer, "message": "pending"}))
        meta = seed.metadata(seed.p)
        broker = meta["brokers"][meta["topics"]["T1"][0]["broker"]]["address"]
        before = snapshot(seed, consumer)

        failures = []
        for method, url, kwargs, status, reason in bad_requests(seed, broker):
            response = requests.request(method, url, timeout=30, **kwargs)
            try:
                body = response.json()
            except ValueError:
                failures.append((method, url, kwargs, response.status_code, response.text[:200]))
                continue
            ok = (
                response.status_code == status
                and body.get("status") == "failure"
                and isinstance(body.get("message"), str)
                and "Traceback" not in body["message"]
                and (reason is None or body.get("reason") == reason)
            )
            if not ok:
                failures.append((method, url[:80], str(kwargs)[:80], response.status_code, body))
        assert not failures, "\n".join(map(str, failures))

        assert snapshot(seed, consumer) == before
        # No producer or consumer id was spent by a refused registration.
        assert seed.ok(seed.post(seed.p, "/producer/register", {"topic": "T1"})) == producer + 1
        assert seed.ok(seed.post(seed.r, "/consumer/register", {"topic": "T1"})) == consumer + 1
        assert seed.ok(seed.get(seed.r, "/consumer/consume", consumer_id=consumer)) == "pending"


def test_thousands_of_partitions_stop_at_the_limit_and_change_nothing(local_cluster):
    with local_cluster(store="memory", brokers=1) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for i in range(defaults.MAX_PARTITIONS_PER_TOPIC):
            seed.add_partition("Wide", f"P{i}")
        before = seed.metadata(seed.p)
        assert len(before["topics"]["Wide"]) == defaults.MAX_PARTITIONS_PER_TOPIC
        for i in range(defaults.MAX_PARTITIONS_PER_TOPIC, defaults.MAX_PARTITIONS_PER_TOPIC + 5):
            body = seed.refused(
                seed.post(seed.p, "/topics/add", {"topic": "Wide", "part": f"P{i}"}), "LIMIT_REACHED"
            )
            assert str(defaults.MAX_PARTITIONS_PER_TOPIC) in body["message"]
        # A producer asking for one more partition is refused the same way, and registers nothing.
        seed.refused(
            seed.post(seed.p, "/producer/register", {"topic": "Wide", "part": "P9999"}), "LIMIT_REACHED"
        )
        after = seed.metadata(seed.p)
        assert after["version"] == before["version"] and after["topics"] == before["topics"]
        broker = after["brokers"]["broker0"]["address"]
        hosted = seed.ok(seed.http.get(f"{broker}/v1/partitions", timeout=30))["partitions"]
        assert len(hosted) == defaults.MAX_PARTITIONS_PER_TOPIC
        assert seed.ok(seed.post(seed.p, "/producer/register", {"topic": "Wide"})) == 0
