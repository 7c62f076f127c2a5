"""Raw seed-contract calls for the integration tests (plain requests: the wire, not our client)."""

import requests

from myqueue.core import framing
from tests.helpers import wait_until


class Seed:
    """The seed's endpoints on one cluster's primary and replica."""

    def __init__(self, primary_url: str, replica_url: str):
        self.p = primary_url
        self.r = replica_url
        self.http = requests.Session()

    def get(self, base: str, path: str, **params):
        return self.http.get(base + path, params=params, timeout=30)

    def post(self, base: str, path: str, body):
        return self.http.post(base + path, json=body, timeout=30)

    def ok(self, response) -> object:
        assert response.status_code == 200, (response.status_code, response.text)
        body = response.json()
        assert body["status"] == "success", body
        return body["message"]

    def refused(self, response, reason: str | None = None, status: int = 400) -> dict:
        assert response.status_code == status, (response.status_code, response.text)
        body = response.json()
        assert body["status"] == "failure" and isinstance(body["message"], str), body
        if reason:
            assert body["reason"] == reason, body
        return body

    def add_partition(self, topic: str, part: str):
        return self.ok(self.post(self.p, "/topics/add", {"topic": topic, "part": part}))

    def metadata(self, base: str) -> dict:
        return self.ok(self.get(base, "/v1/metadata"))

    def wait_replica_synced(self, timeout: float = 20.0) -> None:
        """Wait until the replica serves the primary's current configuration."""
        version = self.metadata(self.p)["version"]
        wait_until(
            lambda: self.metadata(self.r)["version"] >= version, timeout, message="replica did not sync"
        )

    def partition_log(self, topic: str, partition: str) -> list[str]:
        """Every record of a partition, read straight from its broker (the fast path)."""
        meta = self.metadata(self.p)
        broker = next(p["broker"] for p in meta["topics"][topic] if p["partition"] == partition)
        address = meta["brokers"][broker]["address"]
        records, offset = [], 0
        while True:
            response = self.http.get(
                f"{address}/v1/partitions/{topic}/{partition}/records", params={"offset": offset}, timeout=30
            )
            assert response.status_code == 200, response.text
            decoded = framing.decode_set(response.content)
            records += [value.decode() for _, value in decoded.records]
            if decoded.next_offset >= decoded.end_offset:
                return records
            offset = decoded.next_offset
