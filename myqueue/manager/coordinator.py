"""The consumer-group coordinator (issue 14): it lives in the primary manager.

Why the primary: a group needs exactly one coordinator at a time, and the primary already is the
one process every configuration write goes through (one per cluster, restarted in place by the
supervisor or its Deployment). It knows every topic's partitions in creation order and which
broker hosts each, which the assignor and the commits need. Its store (``MetaStore``) keeps each
group's durable state as a saved view ``group:<name>`` (members, their epochs and owned
partitions, the group epoch, the target assignment): in PostgreSQL mode all of it survives a
restart of any process, and a restarted coordinator restarts every member's session clock rather
than evicting members for its own downtime. Heartbeats themselves are not written: only a call that
changed the durable state is.

Committed offsets stay where a group's positions always were: on the broker hosting the
partition (``PUT /v1/.../positions/<group>``), durable there in PostgreSQL mode. A member commits
through the coordinator, which checks the member's epoch and ownership first (a zombie's commit
is refused) and then writes the position; a member reads its committed positions from the brokers
directly. While the coordinator is unreachable members keep consuming what they own (no new
assignments, no commits until it is back); the replica keeps serving the seed's consumers, which
are not group members.

Incarnation: the coordinator names itself with a random id (kept in the store, so in PostgreSQL
mode a restart keeps it) that every heartbeat reply carries and every member sends back. A
memory-mode coordinator forgets its groups when it restarts; a member naming an earlier incarnation
is then taken in with the partitions it owns (``Group.adopt``) instead of being fenced, so a primary
restart costs no re-delivery; for one session timeout such a group hands out no partition nobody
reported (``Group.hold_until``: its owner may not have re-registered yet), and a commit that arrives
before that member's first heartbeat is answered 503 (retry) rather than fenced. A member fenced by this incarnation stays fenced.

Thread-safety: one lock serialises every call on every group (calls are short: the broker writes
of a commit are made outside it, after the check).
"""

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from myqueue.core import defaults, names
from myqueue.core.assignors import AssignorName, TopicPartition
from myqueue.core.groups import Fenced, Group, HeartbeatReply, NotOwned
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal

from .brokers import BrokerClient
from .store import MetaStore

log = logging.getLogger(__name__)

VIEW_PREFIX = "group:"
INCARNATION_VIEW = "coordinator"


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: str
    committed: int | None
    end_offset: int | None
    owner: str | None

    @property
    def lag(self) -> int | None:
        if self.end_offset is None:
            return None
        return self.end_offset - (self.committed or 0)

    def to_json(self) -> dict:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "end_offset": self.end_offset,
            "lag": self.lag,
            "owner": self.owner,
        }


class Coordinator:
    """Every consumer group's membership, assignment and commit checks."""

    def __init__(
        self,
        store: MetaStore,
        brokers: BrokerClient,
        partitions: Callable[[], Mapping[str, Sequence[str]]],
        address_of: Callable[[str, str], str | None],
        *,
        session_timeout_ms: int = defaults.GROUP_SESSION_TIMEOUT_MS,
        heartbeat_interval_ms: int = defaults.GROUP_HEARTBEAT_INTERVAL_MS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._store = store
        self._brokers = brokers
        self._partitions = partitions
        self._address_of = address_of
        self._session_ms = session_timeout_ms
        self._interval_ms = heartbeat_interval_ms
        self._clock = clock
        self._lock = threading.Lock()
        self._groups: dict[str, Group] = {}
        self._topics: dict[str, set[str]] = {}  # topics a group ever subscribed to: its lag's scope
        self._saved: dict[str, dict] = {}
        self._loaded = False
        self.incarnation = uuid.uuid4().hex

    def load(self) -> None:
        """Restore the groups from the store (once, before serving)."""
        now = self._clock()
        kept = self._store.load_view(INCARNATION_VIEW)
        if kept and isinstance(kept.get("incarnation"), str):
            self.incarnation = kept["incarnation"]
        else:
            self._store.save_view(INCARNATION_VIEW, {"incarnation": self.incarnation})
        with self._lock:
            for doc in self._store.views(VIEW_PREFIX).values():
                group = Group.restore(doc["group"], self._session_ms, self._interval_ms, now)
                self._groups[group.name] = group
                self._topics[group.name] = set(doc.get("topics", ()))
                self._saved[group.name] = doc
            self._loaded = True
        log.info("coordinator: %d consumer groups restored", len(self._groups))

    def run_expiry(self, stop: threading.Event) -> None:
        """Remove members the moment their session times out (not at the next heartbeat of another
        member): their partitions are then free for the others' next heartbeats. Until ``stop``."""
        tick = min(self._interval_ms, self._session_ms) / 4000
        while not stop.wait(tick):
            now = self._clock()
            with self._lock:
                for group in list(self._groups.values()):
                    try:
                        if group.expire(now):
                            self._persist(group)
                    except Exception:  # noqa: BLE001 - the store may be down; the next tick retries
                        log.warning("group %s: expired members not saved yet", group.name, exc_info=True)

    # --- the members' calls -----------------------------------------------------------------------
    def heartbeat(
        self,
        group_name: str,
        member_id: str,
        epoch: int,
        topics: Sequence[str],
        owned: Sequence[TopicPartition] | None,
        instance_id: str | None = None,
        assignor: str | None = None,
        incarnation: str | None = None,
    ) -> HeartbeatReply | None:
        _check_group_name(group_name)
        subscription = frozenset(topics)
        partitions = self._partitions()
        unknown = sorted(t for t in subscription if t not in partitions)
        if unknown and epoch == 0:  # a member's topic deleted later only stops being assigned
            raise Refusal(Reason.TOPIC_NOT_FOUND, f"no topic {unknown[0]!r}")
        with self._lock:
            forgotten = epoch > 0 and incarnation is not None and incarnation != self.incarnation
            known = group_name in self._groups
            group = self._group(group_name, assignor, create=epoch == 0 or forgotten)
            if forgotten and not known:  # members re-register for a session before anything moves
                group.hold_until = self._clock() + self._session_ms / 1000
            if forgotten and member_id not in group.members:
                group.adopt(
                    member_id, epoch, subscription, frozenset(owned or ()), self._clock(), instance_id
                )
            if (
                epoch == 0
                and member_id not in group.members
                and len(group.members) >= defaults.MAX_GROUP_MEMBERS
            ):
                raise Refusal(
                    Reason.LIMIT_REACHED, f"group {group_name} has {defaults.MAX_GROUP_MEMBERS} members"
                )
            try:
                reply = group.heartbeat(
                    member_id,
                    epoch,
                    subscription,
                    None if owned is None else frozenset(owned),
                    partitions,
                    self._clock(),
                    instance_id=instance_id,
                )
            except Fenced as e:
                raise Refusal(Reason.FENCED_MEMBER, str(e)) from e
            self._topics.setdefault(group_name, set()).update(subscription)
            self._persist(group)
            return reply

    def commit(
        self,
        group_name: str,
        member_id: str,
        epoch: int,
        offsets: Mapping[TopicPartition, int],
        incarnation: str | None = None,
    ) -> None:
        """Store the member's offsets, once the coordinator agrees it owns those partitions now."""
        _check_group_name(group_name)
        with self._lock:
            group = self._groups.get(group_name)
            if (
                incarnation is not None
                and incarnation != self.incarnation
                and (group is None or member_id not in group.members)
            ):
                raise Refusal(
                    Reason.UNAVAILABLE,
                    "the coordinator restarted: this member's next heartbeat re-registers it",
                )
            if group is None:
                raise Refusal(Reason.FENCED_MEMBER, f"group {group_name} has no member {member_id}")
            try:
                group.check_commit(member_id, epoch, list(offsets), self._clock())
            except Fenced as e:
                raise Refusal(Reason.FENCED_MEMBER, str(e)) from e
            except NotOwned as e:
                raise Refusal(Reason.NOT_OWNER, str(e)) from e
            self._persist(group)  # the check may have expired members
        self._write_positions(group_name, offsets)

    # --- inspection and administration ---------------------------------------------------------------
    def list_groups(self) -> list[dict]:
        with self._lock:
            now = self._clock()
            out = []
            for name in sorted(self._groups):
                group = self._groups[name]
                if group.expire(now):
                    self._persist(group)
                out.append(
                    {
                        "group": name,
                        "state": "stable" if group.live() else "empty",
                        "members": len(group.members),
                        "epoch": group.epoch,
                        "assignor": str(group.assignor),
                        "topics": sorted(self._topics.get(name, ())),
                    }
                )
            return out

    def describe(self, group_name: str) -> dict:
        with self._lock:
            group = self._need(group_name)
            group.expire(self._clock())
            owners = group.owners()
            members = [m.to_json() for m in group.members.values()]
            snapshot = {"epoch": group.epoch, "assignor": str(group.assignor), "rebalances": group.rebalances}
            topics = sorted(self._topics.get(group_name, ()))
            self._persist(group)
        partitions = self._partitions()
        lags = []
        for topic in topics:
            for partition in partitions.get(topic, ()):
                committed, end = self._position(group_name, topic, partition)
                lags.append(PartitionLag(topic, partition, committed, end, owners.get((topic, partition))))
        return {
            "group": group_name,
            "state": "stable" if members else "empty",
            **snapshot,
            "moved_partitions": group.moved,
            "members": members,
            "partitions": [lag.to_json() for lag in lags],
        }

    def reset_offsets(
        self, group_name: str, to: str, offset: int | None, topics: Sequence[str] | None
    ) -> list[dict]:
        """Move an empty group's positions (refused while it has live members, as Kafka): to the
        earliest or latest offset, a given ``offset``, or (``to="timestamp"``, ``offset`` then a time
        in ms) the first record appended at or after that time."""
        if to not in ("earliest", "latest", "offset", "timestamp"):
            raise Refusal(Reason.INVALID_REQUEST, "to is earliest, latest, offset or timestamp")
        if (to in ("offset", "timestamp")) != (offset is not None):
            raise Refusal(
                Reason.INVALID_REQUEST, "an offset is given with to=offset or to=timestamp, and only then"
            )
        with self._lock:
            self._need_empty(group_name)
            scope = sorted(topics) if topics else sorted(self._topics.get(group_name, ()))
        partitions = self._partitions()
        missing = [t for t in scope if t not in partitions]
        if missing:
            raise Refusal(Reason.TOPIC_NOT_FOUND, f"no topic {missing[0]!r}")
        done = []
        for topic in scope:
            for partition in partitions[topic]:
                address = self._need_address(topic, partition)
                target: int | str = to
                if to == "timestamp" and offset is not None:
                    target = self._brokers.offset_for_time(address, topic, partition, offset)
                elif to == "offset" and offset is not None:
                    target = offset
                stored = self._brokers.set_position(address, topic, partition, group_name, target)
                done.append({"topic": topic, "partition": partition, "offset": stored})
        return done

    def delete(self, group_name: str) -> None:
        with self._lock:
            self._need_empty(group_name)
            self._store.delete_view(VIEW_PREFIX + group_name)
            del self._groups[group_name]
            self._topics.pop(group_name, None)
            self._saved.pop(group_name, None)

    def lags(
        self, limit: int | None = None, timeout_s: float | None = None, deadline_s: float | None = None
    ) -> list[tuple[str, PartitionLag]]:
        """(group, lag) for every group and partition of its topics: the lag gauges (manager/metrics.py).

        ``limit``: only the alphabetically first groups; ``timeout_s``: each broker call's timeout;
        ``deadline_s``: past this many seconds, the remaining partitions are reported unknown
        (committed and end None) without calling their brokers, so a scrape stays bounded."""
        with self._lock:
            chosen = sorted(self._groups)[:limit] if limit is not None else sorted(self._groups)
            scopes = {
                name: (sorted(self._topics.get(name, ())), self._groups[name].owners()) for name in chosen
            }
        partitions = self._partitions()
        stop_at = None if deadline_s is None else self._clock() + deadline_s
        out = []
        for name, (topics, owners) in scopes.items():
            for topic in topics:
                for partition in partitions.get(topic, ()):
                    late = stop_at is not None and self._clock() >= stop_at
                    committed, end = (
                        (None, None) if late else self._position(name, topic, partition, timeout_s)
                    )
                    out.append(
                        (name, PartitionLag(topic, partition, committed, end, owners.get((topic, partition))))
                    )
        return out

    def sizes(self, limit: int | None = None) -> dict[str, tuple[int, int]]:
        """{group: (members, rebalances)} for the alphabetically first ``limit`` groups (the metrics)."""
        with self._lock:
            now = self._clock()
            chosen = sorted(self._groups)[:limit] if limit is not None else sorted(self._groups)
            out = {}
            for name in chosen:
                group = self._groups[name]
                if group.expire(now):
                    self._persist(group)
                out[name] = (len(group.members), group.rebalances)
            return out

    # --- internals ---------------------------------------------------------------------------------
    def _group(self, name: str, assignor: str | None, create: bool) -> Group:
        group = self._groups.get(name)
        if group is not None:
            return group
        if not create:
            raise Refusal(Reason.FENCED_MEMBER, f"group {name} has no members: rejoin at epoch 0")
        if len(self._groups) >= defaults.MAX_GROUPS:
            raise Refusal(Reason.LIMIT_REACHED, f"the coordinator already has {defaults.MAX_GROUPS} groups")
        try:
            chosen = AssignorName(assignor or AssignorName.UNIFORM)
        except ValueError:
            raise Refusal(
                Reason.INVALID_REQUEST, f"assignor is one of {[a.value for a in AssignorName]}"
            ) from None
        group = Group(name, self._session_ms, self._interval_ms, chosen)
        self._groups[name] = group
        return group

    def _need(self, name: str) -> Group:
        _check_group_name(name)
        group = self._groups.get(name)
        if group is None:
            raise Refusal(Reason.GROUP_NOT_FOUND, f"no consumer group {name!r}")
        return group

    def _need_empty(self, name: str) -> Group:
        """The group, refused (as Kafka does) while it has live members. Under the lock."""
        group = self._need(name)
        group.expire(self._clock())
        if group.live():
            raise Refusal(
                Reason.GROUP_NOT_EMPTY, f"group {name} has {len(group.members)} live members: stop them first"
            )
        return group

    def _persist(self, group: Group) -> None:
        doc = {"group": group.snapshot(), "topics": sorted(self._topics.get(group.name, ()))}
        if self._saved.get(group.name) == doc:
            return
        self._store.save_view(VIEW_PREFIX + group.name, doc)
        self._saved[group.name] = doc

    def _need_address(self, topic: str, partition: str) -> str:
        address = self._address_of(topic, partition)
        if address is None:
            raise Refusal(Reason.NO_BROKER, f"{topic}:{partition} has no ready broker now")
        return address

    def _write_positions(self, group_name: str, offsets: Mapping[TopicPartition, int]) -> None:
        for (topic, partition), offset in offsets.items():
            self._brokers.set_position(
                self._need_address(topic, partition), topic, partition, group_name, offset
            )

    def _position(
        self, group_name: str, topic: str, partition: str, timeout_s: float | None = None
    ) -> tuple[int | None, int | None]:
        address = self._address_of(topic, partition)
        if address is None:
            return None, None
        try:
            return self._brokers.get_position(address, topic, partition, group_name, timeout=timeout_s)
        except Refusal:
            return None, None


def _check_group_name(name: str) -> None:
    names.validate_group(name)
    if name.startswith(defaults.SEED_GROUP_PREFIX):
        raise Refusal(
            Reason.INVALID_NAME, f"group names starting with {defaults.SEED_GROUP_PREFIX!r} are reserved"
        )
