"""One consumer-group member as its own process, for tests/integration/test_consumer_groups.py.

Usage: python group_member.py HOST PRIMARY_PORT REPLICA_PORT TOPIC GROUP OUT [INSTANCE_ID]

Consumes TOPIC in GROUP from the earliest offset with auto-commit and appends one JSON line per
poll to OUT: what was delivered (``d``: [partition, offset, value]), what is committed after
the poll's commit (``c``: {partition: offset}), what it owns (``a``), and its member id. The
file is flushed each poll, so a test that kills the process knows what it had done.
"""

import json
import signal
import sys
import time

from myqueue import Consumer


def main() -> None:
    host, primary, replica, topic, group, out = sys.argv[1:7]
    instance = sys.argv[7] if len(sys.argv) > 7 else None
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with (
        open(out, "a", buffering=1) as log,
        Consumer(
            topic,
            group=group,
            start="earliest",
            host=host,
            primary_port=int(primary),
            replica_port=int(replica),
            group_instance_id=instance,
        ) as consumer,
    ):
        while not stop:
            records = consumer.poll(0.2)
            line = {
                "t": time.time(),
                "m": consumer.member_id,
                "d": [[r.partition, r.offset, r.value.decode()] for r in records],
                "c": {p: o for (_, p), o in consumer.committed().items()},
                "a": sorted(p for _, p in consumer.assignment()),
            }
            log.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
