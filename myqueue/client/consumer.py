"""The fast-path consumer: fetches record batches straight from the owning brokers, from an offset.

Each assigned partition has a position (the next offset to read). It starts at the group's
committed position when the group has one on the broker, else at ``start``: ``'latest'`` (the
partition's end when the consumer starts: the seed's "from subscription"), ``'earliest'`` (the log
start: the first offset retention kept), an offset, or a time — a ``datetime`` (naive: local time,
as ``datetime.timestamp``) or ``{"timestamp_ms": N}`` — meaning the first record appended at or after
it (log-append time, the broker's, monotonic per partition: Kafka's ``LogAppendTime``; the end when
every stored record is older; ``offsets_for_times`` answers the same lookup).

A position below the log start (retention dropped those records, e.g. a group that was away too
long) makes the fetch answer OFFSET_OUT_OF_RANGE: with ``auto_offset_reset='earliest'`` the position
moves to the log start, with ``'latest'`` to the end (logged as a warning and counted in
``offset_resets``, and on the broker in ``myqueue_broker_offset_out_of_range_total``); with
``auto_offset_reset=None`` (the default) ``poll`` raises ``OffsetOutOfRange`` naming the partition,
the offset and the log start. A topic deleted while consumed makes ``poll`` raise ``TopicNotFound``
(or ``PartitionNotFound``) once the metadata no longer has it. A group's starting position is committed at once, so a restarted group member resumes
from its subscription rather than from a later "latest". Without a group, positions live only in
this object.

``poll`` goes round-robin over the partitions and returns the records of the first one that has
some; when a whole round finds nothing it long-polls one partition for a short, growing while
(sleeping out what the broker's long-poll does not use) rather than spinning. With a single
partition and a timeout the round is skipped: the long-poll answers at once when records are
there, so a caught-up consumer makes one request per poll, not two. Routing failures (partition
moved, broker down) refresh metadata and are retried on later rounds, never raised. With
``auto_commit`` (the default, like Kafka) what earlier polls delivered is committed at the start
of a ``poll`` at most every ``auto_commit_interval`` seconds, and always on ``close`` and before a
group member gives a partition up: at-least-once.

Catching up, the next fetch overlaps with the application's work (``prefetch``, on by default):
when the batch set just read says the partition holds more (its end offset is past the new
position), the fetch the next ``poll`` would make first is started at once on a background
thread, without long-poll. At most one such fetch (at most ``max_bytes``) is held; its records are
not delivered, and the position does not move, until a ``poll`` takes them, so positions and
commits are exactly as without it. A consumer that is caught up never prefetches.

Records are cut from the fetched bytes and built with C-level operations (``framing.DecodedSet``,
``Record`` is a named tuple): no per-record Python code (except one headers tuple per record
when records of one batch carry different numbers of headers). Each v2 batch's CRC-32C is
checked before any of its records is delivered: a mismatch raises ``CorruptRecordError`` naming
the topic, partition and the batch's offset, and the position stays before it. A fetch starting
inside a v2 batch gets the whole batch (it cannot be cut without breaking its CRC); the records
before the position are skipped here.

Consumer groups: with a ``group`` and whole topics (``T`` or ``T:*``), the consumer is a member
of the group (``membership.py``): the coordinator spreads the topics' partitions over the members,
and ``poll`` applies what it decides (revoked partitions committed, then dropped; new ones started
from their committed offsets). With a ``group`` and named partitions (``T:P``) it is Kafka's
``assign()``: it reads exactly those, storing the group's positions, with no membership.

Not thread-safe: one consumer per thread (its prefetch and heartbeat threads share only the
thread-safe ``Transport``, ``Metadata`` and ``GroupMembership``).
"""

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Literal

from myqueue.core import defaults, framing, names
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal

from .address import manager_urls
from .errors import (
    CorruptRecordError,
    FencedMember,
    InvalidRequest,
    MyQueueError,
    NotOwner,
    OffsetOutOfRange,
    ProtocolError,
    from_refusal,
)
from .membership import GroupMembership
from .metadata import Metadata, partition_url, position_url
from .records import Record, Records
from .transport import Backoff, Transport

log = logging.getLogger(__name__)

Start = Literal["latest", "earliest"] | int | datetime | Mapping[str, int]
TopicPartition = tuple[str, str]
Rebalance = Callable[[set[TopicPartition]], None]
CommitCallback = Callable[[dict[TopicPartition, int], BaseException | None], None]
OffsetReset = Literal["earliest", "latest"] | None


def _start_time_ms(start: object) -> int | None:
    """The time (ms) a ``start`` names, None when it names none; ValueError when it is malformed."""
    if isinstance(start, datetime):
        return int(start.timestamp() * 1000)
    if isinstance(start, Mapping):
        value = start.get("timestamp_ms")
        if (
            set(start) != {"timestamp_ms"}
            or not isinstance(value, int)
            or isinstance(value, bool)
            or value < 0
        ):
            raise ValueError(f"a time start is {{'timestamp_ms': int >= 0}}, not {start!r}")
        return value
    return None


class Consumer:
    """Reads the records of its topics' partitions in partition order; an iterator of Record.

    ``listener`` names the address brokers are reached at (``"external"`` from outside a Kubernetes
    cluster: the broker's spec.external); None, their own address.
    """

    def __init__(
        self,
        topics: str | Sequence[str] | re.Pattern[str],
        group: str | None = None,
        start: Start = "latest",
        host: str = defaults.DEFAULT_HOST,
        primary_port: int | None = None,
        replica_port: int | None = None,
        *,
        auto_commit: bool = True,
        auto_commit_interval: float = defaults.CLIENT_AUTO_COMMIT_INTERVAL_S,
        max_records: int | None = None,
        max_bytes: int = defaults.DEFAULT_FETCH_MAX_BYTES,
        idle_timeout: float | None = None,
        timeout: float = defaults.CLIENT_TIMEOUT_S,
        retries: int = defaults.CLIENT_RETRIES,
        token: str | None = None,
        prefetch: bool = True,
        auto_offset_reset: OffsetReset = None,
        group_instance_id: str | None = None,
        assignor: str | None = None,
        on_assign: Rebalance | None = None,
        on_revoke: Rebalance | None = None,
        on_lost: Rebalance | None = None,
        listener: str | None = None,
    ):
        start_ms = _start_time_ms(start)
        if (
            start_ms is None
            and start not in ("latest", "earliest")
            and not (isinstance(start, int) and not isinstance(start, bool) and start >= 0)
        ):
            raise ValueError(
                f"start is 'latest', 'earliest', an offset >= 0, a datetime or {{'timestamp_ms': N}}, not {start!r}"
            )
        if auto_offset_reset not in (None, "earliest", "latest"):
            raise ValueError(f"auto_offset_reset is 'earliest', 'latest' or None, not {auto_offset_reset!r}")
        self.auto_offset_reset = auto_offset_reset
        self.offset_resets = 0  # positions moved by auto_offset_reset
        self.group = _checked_group(group)
        self.auto_commit = auto_commit
        self._commit_every = auto_commit_interval
        self._committed_at = time.monotonic()
        self.idle_timeout = idle_timeout
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._retries = retries
        managers = manager_urls(host, primary_port, replica_port)
        self._transport = Transport(timeout=timeout, retries=retries, token=token)
        self._metadata = Metadata(self._transport, [managers.replica, managers.primary], listener=listener)
        self._idle = Backoff(defaults.CLIENT_BACKOFF_S, defaults.CLIENT_IDLE_POLL_MAX_S)
        self._closed = False
        self._start, self._start_ms = start, start_ms
        self._on_assign, self._on_revoke, self._on_lost = on_assign, on_revoke, on_lost
        self._membership: GroupMembership | None = None
        self._cursor = 0
        self._paused: set[TopicPartition] = set()
        self._active: list[TopicPartition] = []  # assigned and not paused: what poll fetches, in order
        self._prefetch_enabled = prefetch
        self._ends: dict[TopicPartition, int] = {}  # end offset each partition's last fetch reported
        # Records fetched but not delivered yet: a whole v2 batch can hold more than max_records.
        self._held: dict[TopicPartition, Records] = {}
        self._prefetcher: ThreadPoolExecutor | None = None
        self._prefetch: tuple[TopicPartition, int, Future[bytes]] | None = None  # (tp, offset, fetch)
        self._pattern = topics if isinstance(topics, re.Pattern) else None
        self._pattern_checked = time.monotonic()
        self._commit_lock = threading.Lock()  # _committed: written by async commits too
        self._committer: ThreadPoolExecutor | None = None
        self._last_async: Future[None] | None = None
        try:
            if isinstance(topics, re.Pattern):
                specs = self._matching()
            else:
                specs = [topics] if isinstance(topics, str) else list(topics)
            subscribed = self._subscription(specs) if self.group else None
            if self.group and subscribed is not None:
                self._membership = GroupMembership(
                    self._transport,
                    managers.primary,
                    self.group,
                    subscribed,
                    instance_id=group_instance_id,
                    assignor=assignor,
                )
                self._membership.join()
                self._assigned: list[TopicPartition] = []
                self._positions: dict[TopicPartition, int] = {}
                self._committed: dict[TopicPartition, int] = {}
                self._rebalance()
                self._membership.start()
            else:
                self._assigned = self._assign(specs)
                self._positions = {tp: self._start_position(tp, start, start_ms) for tp in self._assigned}
                self._committed = dict(self._positions) if self.group else {}
                self._refresh_active()
        except BaseException:
            if self._membership is not None:
                self._membership.leave()
            self._transport.close()
            raise

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Record]:
        """Records as they arrive; ends after ``idle_timeout`` seconds without one (never if None)."""
        idle_since = time.monotonic()
        while not self._closed:
            if self.idle_timeout is None:
                wait = defaults.CLIENT_BACKOFF_MAX_S
            else:
                wait = idle_since + self.idle_timeout - time.monotonic()
                if wait <= 0:
                    return
            records = self.poll(wait)
            yield from records
            if records:
                idle_since = time.monotonic()

    def positions(self) -> dict[TopicPartition, int]:
        """The next offset to read of each assigned partition."""
        return dict(self._positions)

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads now (a group member's share changes on rebalances)."""
        return list(self._assigned)

    def position(self, tp: TopicPartition) -> int:
        """The next offset ``poll`` reads of an assigned partition."""
        return self._positions[self._need(tp)]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read an assigned partition from ``offset`` on (committed at the next commit)."""
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"an offset is an int >= 0, not {offset!r}")
        self._positions[self._need(tp)] = offset
        if self._prefetch is not None and self._prefetch[0] == tp:
            self._prefetch = None

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        """Read these assigned partitions (all when none is named) from their first stored record."""
        for tp, start in self.beginning_offsets(tps or tuple(self._assigned)).items():
            self.seek(self._need(tp), start)

    def seek_to_end(self, *tps: TopicPartition) -> None:
        """Read these assigned partitions (all when none is named) from their end: new records only."""
        for tp in tps or tuple(self._assigned):
            self.seek(tp, int(self._get(self._need(tp))["end_offset"]))

    def pause(self, *tps: TopicPartition) -> None:
        """Stop fetching these assigned partitions (they stay assigned; a group member keeps them)."""
        self._paused.update(self._need(tp) for tp in tps)
        self._refresh_active()

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)
        self._refresh_active()

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly these partitions (Kafka's ``assign``): for a consumer that is not a group
        member. New ones start at the group's committed offset (with a group) or at ``start``."""
        if self._membership is not None:
            raise InvalidRequest(
                "a group member's partitions are assigned by its group's coordinator",
                reason=Reason.INVALID_REQUEST,
            )
        wanted = list(dict.fromkeys(partitions))
        for tp in wanted:
            if tp not in self._positions:
                self._positions[tp] = self._start_position(tp, self._start, self._start_ms)
                if self.group:
                    self._committed[tp] = self._positions[tp]
        self._drop(set(self._assigned) - set(wanted))
        self._assigned = wanted
        self._refresh_active()

    def poll(self, timeout: float = 0.0) -> Sequence[Record]:
        """The next records of one partition (round-robin), waiting up to ``timeout`` s for some.

        A ``Records`` sequence (each Record made as it is read; see there why), or [] when none came."""
        if self._closed:
            raise RuntimeError("the consumer is closed")
        if self.auto_commit and time.monotonic() - self._committed_at >= self._commit_every:
            self._auto_commit()
        deadline = time.monotonic() + timeout
        if self._pattern is not None and self._membership is not None:
            self._rematch()
        if self._membership is not None:
            self._rebalance()
            if not self._assigned:  # nothing owned yet (or any more): wait for the coordinator
                self._membership.wait_for_change(max(0.0, timeout))
                self._rebalance()
        if not self._active:
            time.sleep(max(0.0, deadline - time.monotonic()) if self._membership is None else 0.0)
            return []
        idle_rounds = 0
        single = len(self._active) == 1
        while True:
            if not single or self._prefetch is not None or timeout <= 0:
                for _ in self._active:
                    records = self._fetch(self._next_partition(), 0.0)
                    if records:
                        return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wait = min(remaining, self._idle.delay(idle_rounds))
            waited_from = time.monotonic()
            records = self._fetch(self._next_partition(), wait)
            if records:
                return records
            time.sleep(max(0.0, waited_from + wait - time.monotonic()))  # a long-poll may end early
            idle_rounds += 1
            if self._membership is not None and self._rebalance_due():
                return []  # the next poll applies the new assignment first

    def commit(self, partitions: Sequence[TopicPartition] | None = None) -> None:
        """Store the group's position of every partition read since the last commit (or of
        ``partitions`` only); a no-op without a group. A group member commits through the
        coordinator: ``FencedMember`` if it no longer owns them (their records go to the new owner)."""
        due = self._due(partitions)
        if self._last_async is not None:  # commits are stored in the order they were asked for
            self._last_async.exception()
        if due:
            self._store(due)

    def commit_async(self, callback: CommitCallback | None = None) -> "Future[None]":
        """Commit what was read so far on a background thread; ``callback(offsets, error)`` runs
        there when it is done (error None on success). Commits keep their order: a later ``commit``
        waits for this one. Returns the Future of it."""
        due = self._due(None)
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="myqueue-commit")
        future = self._committer.submit(self._store, due)
        if callback is not None:
            future.add_done_callback(lambda f: callback(due, f.exception()))
        self._last_async = future
        return future

    def _due(self, partitions: Sequence[TopicPartition] | None) -> dict[TopicPartition, int]:
        if not self.group:
            return {}
        chosen = self._positions if partitions is None else {tp: self._positions[tp] for tp in partitions}
        with self._commit_lock:
            return {tp: offset for tp, offset in chosen.items() if self._committed.get(tp) != offset}

    def _store(self, due: dict[TopicPartition, int]) -> None:
        if not due or not self.group:
            return
        if self._membership is not None:
            self._membership.commit(due)
        else:
            for tp, offset in due.items():
                self._put_position(tp, self.group, offset)
        with self._commit_lock:
            self._committed.update(due)

    def committed(self) -> dict[TopicPartition, int]:
        """The positions this consumer last committed (or found committed) per assigned partition."""
        with self._commit_lock:
            return {tp: self._committed[tp] for tp in self._assigned if tp in self._committed}

    @property
    def member_id(self) -> str | None:
        """This consumer's member id in its group (None when it is not a group member)."""
        return None if self._membership is None else self._membership.member_id

    def close(self, *, commit: bool | None = None, leave_group: bool = True) -> None:
        """Commit (``commit``, default ``auto_commit``), leave the group, and release connections.

        ``leave_group=False`` stops heartbeating without telling the coordinator, as a crash would:
        the member's partitions move only when its session times out (``verify``'s kill-member
        fault; a static member that restarts at once gets them back)."""
        if self._closed:
            return
        try:
            if self.auto_commit if commit is None else commit:
                self._auto_commit()
        finally:
            self._closed = True
            self._prefetch = None
            if self._prefetcher is not None:
                self._prefetcher.shutdown(wait=True, cancel_futures=True)  # a prefetch does not long-poll
            if self._committer is not None:
                self._committer.shutdown(wait=True)  # asked-for commits are sent before leaving
            if self._membership is not None:
                self._membership.leave(tell=leave_group)
            self._transport.close()

    # --- group membership ---------------------------------------------------------------------------
    def _auto_commit(self) -> None:
        self._committed_at = time.monotonic()
        try:
            self.commit()
        except (FencedMember, NotOwner) as e:
            log.warning("group %s: commit refused, this member was fenced: %s", self.group, e)
        except MyQueueError as e:
            if self._membership is None or not (e.retriable or e.unavailable or e.outcome_unknown):
                raise
            # The coordinator is unreachable: keep consuming what is owned; the next commit covers it.
            log.warning("group %s: auto-commit deferred, the coordinator did not answer: %s", self.group, e)

    def _rebalance_due(self) -> bool:
        m = self._membership
        return m is not None and (m.fenced() or m.target().partitions != frozenset(self._assigned))

    def _rebalance(self) -> None:
        """Apply the coordinator's latest answer: revoke, then assign (the consumer's thread only)."""
        m = self._membership
        if m is None:
            return
        if m.fenced():
            lost = set(self._assigned)
            log.warning(
                "group %s: fenced; dropping %d partitions uncommitted and rejoining", self.group, len(lost)
            )
            self._drop(lost)
            if lost and self._on_lost is not None:
                self._on_lost(lost)
            m.rejoin()
            return
        target = m.target().partitions
        held = set(self._assigned)
        revoked, assigned = held - target, target - held
        if revoked:
            if self._on_revoke is not None:
                self._on_revoke(set(revoked))
            if self.auto_commit:
                try:
                    self.commit(sorted(revoked))
                except (FencedMember, NotOwner) as e:  # they went to their next owner uncommitted
                    log.warning("group %s: commit of revoked partitions refused: %s", self.group, e)
                except MyQueueError as e:
                    if not (e.retriable or e.unavailable or e.outcome_unknown):
                        raise
                    log.warning("group %s: revoked partitions left uncommitted: %s", self.group, e)
            self._drop(revoked)
        if assigned:
            for tp in sorted(assigned):
                self._positions[tp] = self._start_position(tp, self._start, self._start_ms)
                self._assigned.append(tp)
            if self._on_assign is not None:
                self._on_assign(set(assigned))
        if revoked or assigned:
            self._refresh_active()
            m.report(frozenset(self._assigned))

    def _matching(self) -> list[str]:
        """The topics the pattern matches now (fullmatch, as Kafka's), in name order."""
        assert self._pattern is not None
        view = self._metadata.refresh()
        return sorted(t for t in view.topics if self._pattern.fullmatch(t))

    def _rematch(self) -> None:
        """Every CLIENT_PATTERN_REFRESH_S: a pattern subscription takes in topics created since."""
        if (
            time.monotonic() - self._pattern_checked < defaults.CLIENT_PATTERN_REFRESH_S
            or self._membership is None
        ):
            return
        self._pattern_checked = time.monotonic()
        try:
            topics = self._matching()
        except MyQueueError as e:
            log.warning("group %s: topic pattern not re-evaluated: %s", self.group, e)
            return
        if topics:
            self._membership.subscribe(topics)

    def _need(self, tp: TopicPartition) -> TopicPartition:
        if tp not in self._positions:
            raise InvalidRequest(
                f"{tp[0]}:{tp[1]} is not assigned to this consumer", reason=Reason.INVALID_REQUEST
            )
        return tp

    def _refresh_active(self) -> None:
        self._active = [tp for tp in self._assigned if tp not in self._paused]
        self._cursor = 0

    def _drop(self, partitions: set[TopicPartition]) -> None:
        if self._prefetch is not None and self._prefetch[0] in partitions:
            self._prefetch = None
        self._assigned = [tp for tp in self._assigned if tp not in partitions]
        for tp in partitions:
            self._positions.pop(tp, None)
            self._committed.pop(tp, None)
            self._ends.pop(tp, None)
            self._held.pop(tp, None)
        self._paused -= partitions
        self._refresh_active()

    def _subscription(self, specs: Sequence[str]) -> list[str] | None:
        """The topics, when every spec names a whole topic (``T``, ``T:*``); None when any names a partition."""
        topics: list[str] = []
        for spec in specs:
            try:
                topic, partition = names.parse_topic_spec(spec)
            except Refusal as e:
                raise from_refusal(e) from e
            if partition:
                return None
            self._metadata.partitions(topic)  # TopicNotFound now rather than from the coordinator
            if topic not in topics:
                topics.append(topic)
        if not topics:
            raise InvalidRequest("a consumer needs at least one topic", reason=Reason.INVALID_REQUEST)
        return topics

    def _assign(self, specs: Sequence[str]) -> list[TopicPartition]:
        """Topic specs (``T``, ``T:*``, ``T:P``) to partitions, in spec order then creation order."""
        assignment: list[TopicPartition] = []
        for spec in specs:
            try:
                topic, partition = names.parse_topic_spec(spec)
            except Refusal as e:
                raise from_refusal(e) from e
            known = self._metadata.partitions(topic, containing=partition)
            chosen = [partition] if partition else known
            assignment.extend((topic, p) for p in chosen if (topic, p) not in assignment)
        if not assignment:
            raise InvalidRequest("a consumer needs at least one topic", reason=Reason.INVALID_REQUEST)
        return assignment

    def _start_position(self, tp: TopicPartition, start: Start, start_ms: int | None) -> int:
        if self.group:
            state = self._get(tp, self.group)
            if state["offset"] is not None:
                if self._membership is not None:
                    self._committed[tp] = state["offset"]
                return state["offset"]
        if start_ms is not None:
            found = self._offset_for_time(tp, start_ms)
            offset = found["end_offset"] if found["offset"] is None else found["offset"]
        elif start in ("latest", "earliest"):
            log_info = self._get(tp)
            offset = log_info["end_offset"] if start == "latest" else log_info["log_start_offset"]
        else:
            assert isinstance(start, int)  # noqa: S101 - checked in __init__
            offset = start
        if self._membership is not None:
            self._membership.commit({tp: offset})
            self._committed[tp] = offset
        elif self.group:
            self._put_position(tp, self.group, offset)
        return offset

    # --- offsets by time, log start and end ------------------------------------------------------------
    def offsets_for_times(self, timestamps: Mapping[TopicPartition, int]) -> dict[TopicPartition, int | None]:
        """Per partition, the first offset appended at or after the time (ms since the epoch; the
        broker's log-append time), or None when every stored record is older (as Kafka's
        ``offsets_for_times``). Answered by each partition's broker with a binary search."""
        out: dict[TopicPartition, int | None] = {}
        for tp, ts in timestamps.items():
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                raise ValueError(f"timestamps are ints >= 0 (ms since the epoch), not {ts!r}")
            out[tp] = self._offset_for_time(tp, ts)["offset"]
        return out

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Per partition, its log start: the first offset still stored (retention moves it up)."""
        return {tp: self._get(tp)["log_start_offset"] for tp in partitions}

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Per partition, its end offset: the offset the next appended record gets."""
        return {tp: self._get(tp)["end_offset"] for tp in partitions}

    def _offset_for_time(self, tp: TopicPartition, timestamp_ms: int) -> dict:
        def get(broker: str) -> dict:
            url = partition_url(broker, *tp, "/offsets")
            return self._transport.json("GET", url, params={"timestamp_ms": timestamp_ms})["message"]

        return self._metadata.call_owner(*tp, get, retries=self._retries)

    def _out_of_range(self, tp: TopicPartition, offset: int, error: MyQueueError) -> None:
        """A fetch below the log start: reset the position as configured, or raise OffsetOutOfRange."""
        log_info = self._get(tp)
        start, end = log_info["log_start_offset"], log_info["end_offset"]
        if self.auto_offset_reset is None:
            raise OffsetOutOfRange(
                f"{tp[0]}:{tp[1]}: offset {offset} is before the log start {start} (retention dropped "
                f"those records); give auto_offset_reset='earliest' or 'latest' to move on",
                reason=Reason.OFFSET_OUT_OF_RANGE,
                status=error.status,
                topic=tp[0],
                partition=tp[1],
                offset=offset,
                log_start=start,
                end_offset=end,
            ) from error
        moved = start if self.auto_offset_reset == "earliest" else end
        log.warning(
            "%s:%s: offset %d is before the log start %d; auto_offset_reset=%s moves to %d",
            *tp,
            offset,
            start,
            self.auto_offset_reset,
            moved,
        )
        self.offset_resets += 1
        self._positions[tp] = moved

    def _get(self, tp: TopicPartition, group: str | None = None) -> dict:
        """The partition's state, or with ``group`` that group's position on it."""

        def get(broker: str) -> dict:
            url = position_url(broker, *tp, group) if group else partition_url(broker, *tp)
            return self._transport.json("GET", url)["message"]

        return self._metadata.call_owner(*tp, get, retries=self._retries)

    def _put_position(self, tp: TopicPartition, group: str, offset: int) -> None:
        def put(broker: str) -> None:
            url = position_url(broker, *tp, group)
            self._transport.json("PUT", url, body={"offset": offset})

        self._metadata.call_owner(*tp, put, retries=self._retries)

    def _next_partition(self) -> TopicPartition:
        self._cursor %= len(self._active)
        tp = self._active[self._cursor]
        self._cursor = (self._cursor + 1) % len(self._active)
        return tp

    def _fetch(self, tp: TopicPartition, wait: float) -> Sequence[Record]:
        """Records from the partition's position, long-polling ``wait`` s; [] on a routing failure."""
        topic, partition = tp
        offset = self._positions[tp]
        held = self._held.pop(tp, None)
        if held and held.first_offset == offset:  # (a position moved elsewhere drops them)
            return self._deliver(tp, held)
        prefetch, self._prefetch = self._prefetch, None
        try:
            if prefetch is not None and prefetch[:2] == (tp, offset):
                data = prefetch[2].result()
            else:
                data = self._read(tp, offset, wait)
        except OffsetOutOfRange as e:
            self._out_of_range(tp, offset, e)
            return []
        except MyQueueError as e:
            if not e.invalid_metadata:
                raise
            log.warning("fetch from %s:%s failed, will retry: %s", topic, partition, e)
            return []
        try:
            batch_set = framing.decode_set(data, start=offset, partial=True)  # a v2 batch may start before it
        except framing.CorruptBatch as e:
            raise CorruptRecordError.at(topic, partition, e.base_offset) from e
        except ValueError as e:
            raise ProtocolError(f"{topic}:{partition}: bad batch set: {e}") from e
        self._positions[tp] = batch_set.next_offset
        self._ends[tp] = batch_set.end_offset
        if not len(batch_set):
            return []
        delivered = self._deliver(tp, Records(topic, partition, batch_set.segments()))
        self._start_prefetch()  # these records go to the application now: fetch the next ones meanwhile
        return delivered

    def _deliver(self, tp: TopicPartition, records: Records) -> Records:
        """At most ``max_records`` of ``records`` (the rest held for the next poll); the position follows."""
        limit = self._max_records
        if limit is not None and len(records) > limit:
            records, self._held[tp] = records.split(limit)
        self._positions[tp] = records.last_offset + 1
        return records

    def _read(self, tp: TopicPartition, offset: int, wait: float) -> bytes:
        """One fetch's batch set, as bytes, from the partition's owner (no retry)."""
        topic, partition = tp
        params = {"offset": offset, "max_bytes": self._max_bytes, "wait_ms": int(wait * 1000)}
        if self._max_records is not None:
            params["max_records"] = self._max_records

        def read(broker: str) -> bytes:
            url = partition_url(broker, topic, partition, "/records")
            return self._transport.binary("GET", url, params=params, timeout=self._timeout + wait)

        return self._metadata.call_owner(topic, partition, read, retries=0)

    def _start_prefetch(self) -> None:
        """Start the next poll's first fetch now if that partition is known to hold more records."""
        if not self._active:
            return
        tp = self._active[self._cursor % len(self._active)]
        held = self._held.get(tp)
        offset = held.last_offset + 1 if held else self._positions[tp]  # what follows the held records
        if not self._prefetch_enabled or self._prefetch is not None or self._ends.get(tp, 0) <= offset:
            return
        if self._prefetcher is None:
            self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="myqueue-prefetch")
        self._prefetch = (tp, offset, self._prefetcher.submit(self._read, tp, offset, 0.0))


def _checked_group(group: str | None) -> str | None:
    if group is None:
        return None
    try:
        names.validate_group(group)
    except Refusal as e:
        raise from_refusal(e) from e
    if group.startswith(defaults.SEED_GROUP_PREFIX):
        raise InvalidRequest(
            f"group names starting with {defaults.SEED_GROUP_PREFIX!r} are reserved for the managers",
            reason=Reason.INVALID_NAME,
        )
    return group
