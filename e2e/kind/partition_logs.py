"""Print every partition's log as JSON: {"T1": {"P1": ["msg", ...]}, ...}.

Run INSIDE the primary manager's pod (e2e/kind/run.sh pipes it into
`kubectl exec -i deploy/<primary> -- python -`): the brokers' addresses the primary knows are
cluster-internal, so the log is read where they resolve. Reads /v1/metadata from the primary
(127.0.0.1:5000, or $E2E_PRIMARY_URL), then each partition's records from its broker, from offset 0 (the fast path's
binary batch sets, decoded by the image's own myqueue.core.framing). Standard library + myqueue.
"""

# Loopback primary and the brokers it names: cluster-internal http URLs.
# ruff: noqa: S310

import json
import os
import sys
import urllib.parse
import urllib.request

from myqueue.core import framing

PRIMARY = os.environ.get("E2E_PRIMARY_URL", "http://127.0.0.1:5000").rstrip("/")


def get(url: str) -> bytes:
    token = os.environ.get("MYQUEUE_TOKEN")  # the cluster's API token, when auth is on
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def partition_log(address: str, topic: str, partition: str) -> list[str]:
    records: list[str] = []
    offset = 0
    while True:
        query = urllib.parse.urlencode({"offset": offset})
        decoded = framing.decode_set(get(f"{address}/v1/partitions/{topic}/{partition}/records?{query}"))
        records += [value.decode() for _, value in decoded.records]
        if decoded.next_offset >= decoded.end_offset:
            return records
        offset = decoded.next_offset


def main() -> None:
    meta = json.loads(get(f"{PRIMARY}/v1/metadata"))["message"]
    logs: dict[str, dict[str, list[str]]] = {}
    for topic, partitions in meta["topics"].items():
        for entry in partitions:
            broker = entry["broker"]
            if broker is None:
                sys.exit(f"partition {topic}:{entry['partition']} has no broker")
            address = meta["brokers"][broker]["address"]
            logs.setdefault(topic, {})[entry["partition"]] = partition_log(address, topic, entry["partition"])
    json.dump(logs, sys.stdout)


if __name__ == "__main__":
    main()
