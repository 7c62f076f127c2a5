"""A consumer's membership of a consumer group (issue 14): heartbeats on a thread of their own.

The coordinator (the primary manager) decides which partitions each member owns; this class
keeps the member's side of the protocol (``myqueue.core.groups`` describes it):

- ``join`` sends the first heartbeat (epoch 0) from the caller's thread, so a consumer starts
  with its share; ``start`` then heartbeats every interval the coordinator sets, on a daemon
  thread, whatever the application does between polls (processing time never evicts a member).
- The heartbeat thread only records what the coordinator answered (``target``); the consumer's
  own thread applies it in ``poll`` (``Consumer._rebalance``): revoked partitions first (the
  ``on_revoke`` callback, then their commit, then they are dropped), then assigned ones
  (positions from the committed offsets, then ``on_assign``). The next heartbeat reports the
  partitions the consumer really holds, which is what lets the coordinator give a revoked
  partition to its next owner: never two owners at once.
- Fenced (the coordinator no longer knows this member at this epoch, e.g. after a pause past the
  session timeout): the heartbeat thread stops, the consumer drops every partition without
  committing (their records may be re-delivered to the new owners: at-least-once), and the member
  rejoins at epoch 0.
- The coordinator unreachable: heartbeats are retried at the interval; the member keeps its
  partitions and keeps consuming them; nothing new is assigned until the coordinator answers.
- ``leave`` on ``close``: epoch -1 (partitions free at once), or -2 for a static member
  (``group_instance_id``), whose partitions wait for it until its session times out.

Thread-safety: ``target``, ``epoch`` and ``fenced`` are written by the heartbeat thread under a
lock and read by the consumer's thread; ``report`` is the consumer thread's only write.
"""

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from myqueue.core import defaults

from .errors import FencedMember, MyQueueError
from .transport import Transport

log = logging.getLogger(__name__)

TopicPartition = tuple[str, str]


@dataclass(frozen=True)
class Target:
    """What the coordinator last said this member owns, at which member epoch."""

    epoch: int
    partitions: frozenset[TopicPartition]


class GroupMembership:
    """One member of one group; its heartbeat thread runs between ``start`` and ``leave``."""

    def __init__(
        self,
        transport: Transport,
        primary_url: str,
        group: str,
        topics: Sequence[str],
        *,
        instance_id: str | None = None,
        assignor: str | None = None,
    ):
        self.group = group
        self.member_id = uuid.uuid4().hex  # client-chosen, as KIP-1082
        self.instance_id = instance_id
        self._transport = transport
        self._url = f"{primary_url}/v1/groups/{group}"
        self._topics = list(topics)
        self._assignor = assignor
        self._lock = threading.Lock()
        self._epoch = 0
        self._incarnation: str | None = None  # the coordinator's, from its last reply
        self._target = Target(0, frozenset())
        self._owned: frozenset[TopicPartition] = frozenset()  # what the consumer holds (its report)
        self._interval_s = defaults.GROUP_HEARTBEAT_INTERVAL_MS / 1000
        self._fenced = threading.Event()
        self._changed = threading.Event()  # a new target arrived (or fenced): the consumer should look
        self._wake = threading.Event()  # heartbeat now (the consumer applied a change)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeats = 0
        self.heartbeat_failures = 0

    # --- the consumer's side ---------------------------------------------------------------------
    def join(self) -> None:
        """The first heartbeat, on the caller's thread: raises if the coordinator refuses."""
        self._beat()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"myqueue-heartbeat-{self.group}", daemon=True)
        self._thread.start()

    @property
    def epoch(self) -> int:
        with self._lock:
            return self._epoch

    def target(self) -> Target:
        with self._lock:
            return self._target

    def fenced(self) -> bool:
        return self._fenced.is_set()

    def wait_for_change(self, timeout: float) -> bool:
        """Block up to ``timeout`` s for a new target (a consumer with nothing assigned waits here)."""
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed

    def subscribe(self, topics: Sequence[str]) -> None:
        """A new subscription (a topic pattern matched new topics); the next heartbeat carries it."""
        with self._lock:
            self._topics = list(topics)
        self._wake.set()

    def report(self, owned: frozenset[TopicPartition]) -> None:
        """The partitions the consumer holds now; the next heartbeat (sent at once) says so."""
        with self._lock:
            self._owned = owned
        self._wake.set()

    def rejoin(self) -> None:
        """After being fenced and dropping every partition: join again as a new member epoch 0."""
        with self._lock:
            self._epoch = 0
            self._owned = frozenset()
            self._target = Target(0, frozenset())
        self._fenced.clear()
        self._wake.set()

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit through the coordinator, which checks this member's epoch and ownership first."""
        if not offsets:
            return
        body = {
            "member_id": self.member_id,
            "member_epoch": self.epoch,
            "incarnation": self._incarnation,
            "offsets": [[t, p, o] for (t, p), o in sorted(offsets.items())],
        }
        try:
            self._transport.json("POST", f"{self._url}/commit", body=body, retry=True)
        except FencedMember:
            self._fenced.set()
            raise

    def leave(self, tell: bool = True) -> None:
        """Stop heartbeating and, with ``tell``, tell the coordinator (best effort: a lost leave
        times out)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self._transport.timeout + 1)
        if self._fenced.is_set() or not tell:
            return
        epoch = -2 if self.instance_id else -1
        try:
            self._send(epoch, None)
        except MyQueueError as e:
            log.info("group %s: leave not acknowledged (%s); the session will time out", self.group, e)

    # --- the heartbeat thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval_s)
            self._wake.clear()
            if self._stop.is_set() or self._fenced.is_set():
                continue
            try:
                self._beat()
            except FencedMember as e:
                log.warning("group %s: member %s fenced: %s", self.group, self.member_id, e)
                self._fenced.set()
                self._changed.set()
            except MyQueueError as e:
                self.heartbeat_failures += 1
                log.warning("group %s: heartbeat failed, keeping the current assignment: %s", self.group, e)

    def _beat(self) -> None:
        with self._lock:
            epoch, owned = self._epoch, self._owned
        reply = self._send(epoch, owned)
        with self._lock:
            self._epoch = reply["member_epoch"]
            self._incarnation = reply.get("incarnation", self._incarnation)
            self._interval_s = reply.get("heartbeat_interval_ms", self._interval_s * 1000) / 1000
            target = Target(self._epoch, frozenset((t, p) for t, p in reply["assignment"]))
            new = target.partitions != self._target.partitions
            self._target = target
        self.heartbeats += 1
        if new:
            self._changed.set()

    def _send(self, epoch: int, owned: frozenset[TopicPartition] | None) -> dict:
        with self._lock:
            topics = list(self._topics)
        body = {
            "member_id": self.member_id,
            "member_epoch": epoch,
            "topics": topics,
            "owned": None if owned is None else sorted([t, p] for t, p in owned),
            "instance_id": self.instance_id,
            "assignor": self._assignor,
            "incarnation": self._incarnation,
        }
        return self._transport.json("POST", f"{self._url}/heartbeat", body=body)["message"]
