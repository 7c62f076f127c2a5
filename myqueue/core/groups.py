"""A consumer group's membership and incremental assignment, as KIP-848 does it (issue 14).

Pure logic with an injected clock: the coordinator (``myqueue.manager.coordinator``) owns one
``Group`` per group name, serialises calls on it under its lock, persists ``snapshot()`` when a
call changed durable state, and answers the members' heartbeats with what ``heartbeat`` returns.

The protocol, in short:
- A member picks its own id and joins with a heartbeat at epoch 0. Every heartbeat carries its
  epoch, its subscription and the partitions it owns now; the reply carries its epoch, the
  partitions it may own, and the heartbeat interval and session timeout (set here, not by the
  client). A member that sends no heartbeat within the session timeout is removed and its
  partitions are free at once. Time spent processing between polls never counts: the client
  heartbeats on its own thread.
- Any change of membership or subscriptions bumps the group epoch and recomputes the target
  assignment with the group's assignor (``myqueue.core.assignors``), sticky by default.
- Incremental: a member keeps consuming the partitions it keeps. A partition leaving a member is
  first revoked (the reply leaves it out; the member commits and stops, then reports it no longer
  owns it) and only then given to its new owner. So a partition is never owned by two live members
  at once, as far as the coordinator knows; the member's epoch moves to the group's once it has
  no revocation pending.
- Fencing: a heartbeat or commit from an unknown member, or with an epoch other than the member's
  current (or, after a lost reply, previous) one, is refused with ``Fenced``; the client then
  drops its partitions without committing and rejoins at epoch 0. A commit must also name only
  partitions the member owns (revocations still pending count: ``on_revoke`` commits).
- Static membership: a member with a ``group_instance_id`` that leaves with epoch -2 keeps its
  partitions until its session times out; a member joining with the same instance id (a
  restarted pod) takes them over without a rebalance, and fences any older member of that id.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .assignors import Assignment, AssignorName, TopicPartition, assign, moves

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2


class Fenced(Exception):
    """The member is unknown or its epoch is stale: drop every partition, rejoin at epoch 0."""


class NotOwned(Exception):
    """A commit named a partition the member does not own."""


@dataclass
class Member:
    member_id: str
    instance_id: str | None
    topics: frozenset[str]
    epoch: int
    previous_epoch: int
    owned: frozenset[TopicPartition]  # what the member may consume now, as the coordinator sees it
    deadline: float  # session expiry, on the coordinator's monotonic clock
    left: bool = False  # a static member that left: kept until its session times out

    def to_json(self) -> dict:
        return {
            "member_id": self.member_id,
            "instance_id": self.instance_id,
            "topics": sorted(self.topics),
            "epoch": self.epoch,
            "previous_epoch": self.previous_epoch,
            "owned": sorted(self.owned),
            "left": self.left,
        }

    @classmethod
    def from_json(cls, doc: Mapping, deadline: float) -> "Member":
        return cls(
            member_id=doc["member_id"],
            instance_id=doc["instance_id"],
            topics=frozenset(doc["topics"]),
            epoch=doc["epoch"],
            previous_epoch=doc["previous_epoch"],
            owned=frozenset((t, p) for t, p in doc["owned"]),
            deadline=deadline,
            left=doc["left"],
        )


@dataclass(frozen=True)
class HeartbeatReply:
    member_id: str
    epoch: int
    assignment: frozenset[TopicPartition]
    pending: frozenset[TopicPartition]  # in the target, still owned by someone else: comes later
    heartbeat_interval_ms: int
    session_timeout_ms: int


@dataclass
class Group:
    name: str
    session_timeout_ms: int
    heartbeat_interval_ms: int
    assignor: AssignorName = AssignorName.UNIFORM
    epoch: int = 0  # the group epoch: bumped by every membership or subscription change
    target_epoch: int = 0  # the group epoch ``target`` was computed for
    target: Assignment = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    # Until then nothing new is handed out: a coordinator that lost its state adopts members as they
    # heartbeat, and must not give a partition away before its owner had the chance to say it has it.
    hold_until: float = 0.0
    rebalances: int = 0  # target recomputations that moved at least one partition
    moved: int = 0  # partitions moved by them, in total (stickiness: fewer is better)

    # --- the protocol ------------------------------------------------------------------------
    def heartbeat(
        self,
        member_id: str,
        epoch: int,
        topics: frozenset[str],
        owned: frozenset[TopicPartition] | None,
        partitions: Mapping[str, Sequence[str]],
        now: float,
        instance_id: str | None = None,
    ) -> HeartbeatReply | None:
        """One heartbeat (join at epoch 0, leave at -1 or -2). Returns None after a leave.

        ``owned`` is what the member consumes now (None: unchanged since its last heartbeat);
        ``partitions``: every known topic's partitions in creation order. Raises Fenced.
        """
        if epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            self.leave(member_id, epoch, now)
            return None
        self.expire(now)
        member = self.members.get(member_id)
        if epoch == JOIN_EPOCH:
            member = self._join(member_id, instance_id, topics, now)
        elif member is None or epoch not in (member.epoch, member.previous_epoch):
            raise Fenced(f"member {member_id} of group {self.name} is unknown or fenced (epoch {epoch})")
        elif epoch == member.previous_epoch and member.previous_epoch != member.epoch:
            # A reply was lost: the member asks again with the epoch before; accept it only if it
            # does not claim more than it was given.
            if owned is not None and not owned <= member.owned:
                raise Fenced(f"member {member_id} of group {self.name}: stale epoch {epoch}")
        member.deadline = now + self.session_timeout_ms / 1000
        member.left = False
        if owned is not None:
            member.owned = member.owned & owned  # a member cannot claim what it was never given
        if topics != member.topics:
            member.topics = topics
            self._bump()
        self._retarget(partitions)
        if now < self.hold_until:
            return self._reply(
                member, member.owned, self.target.get(member.member_id, frozenset()) - member.owned
            )
        return self._reconcile(member)

    def adopt(
        self,
        member_id: str,
        epoch: int,
        topics: frozenset[str],
        owned: frozenset[TopicPartition],
        now: float,
        instance_id: str | None = None,
    ) -> None:
        """Take in a member a coordinator that lost its state (memory mode, restarted) does not
        know, at the epoch it presents and with the partitions it reports owning that no other
        member owns: it goes on consuming them instead of being fenced for the coordinator's loss
        (and a commit it sent at that epoch meanwhile is accepted). The caller decides when that
        applies (the member names an earlier coordinator incarnation)."""
        self.expire(now)
        if member_id in self.members:
            return
        taken = {tp for m in self.members.values() for tp in m.owned}
        kept = frozenset(tp for tp in owned if tp not in taken)
        self.epoch = max(self.epoch, epoch)
        self._bump()
        self.members[member_id] = Member(
            member_id, instance_id, topics, epoch, epoch, kept, now + self.session_timeout_ms / 1000
        )
        self.target[member_id] = kept

    def leave(self, member_id: str, epoch: int, now: float) -> None:
        """A member leaving on ``close()``: -1 removes it (its partitions are free at once); -2, a
        static member's leave, keeps its partitions until its session times out."""
        self.expire(now)
        member = self.members.get(member_id)
        if member is None:
            return
        if epoch == STATIC_LEAVE_EPOCH and member.instance_id is not None:
            member.left = True
            return
        self._remove(member_id)

    def check_commit(self, member_id: str, epoch: int, tps: Sequence[TopicPartition], now: float) -> None:
        """Raise Fenced or NotOwned unless this member may commit offsets for ``tps`` now."""
        self.expire(now)
        member = self.members.get(member_id)
        if member is None or epoch not in (member.epoch, member.previous_epoch) or member.left:
            raise Fenced(f"member {member_id} of group {self.name} is unknown or fenced (epoch {epoch})")
        missing = [tp for tp in tps if tp not in member.owned]
        if missing:
            raise NotOwned(f"member {member_id} of group {self.name} does not own {missing}")

    def expire(self, now: float) -> list[str]:
        """Remove the members whose session timed out; returns their ids."""
        gone = [m.member_id for m in self.members.values() if m.deadline < now]
        for member_id in gone:
            self._remove(member_id)
        return gone

    def owners(self) -> dict[TopicPartition, str]:
        """Partition -> the member that owns it now."""
        return {tp: m.member_id for m in self.members.values() for tp in m.owned}

    def live(self) -> bool:
        return bool(self.members)

    def topics(self) -> frozenset[str]:
        return frozenset(t for m in self.members.values() for t in m.topics)

    # --- persistence -------------------------------------------------------------------------
    def snapshot(self) -> dict:
        return {
            "name": self.name,
            "assignor": str(self.assignor),
            "epoch": self.epoch,
            "target_epoch": self.target_epoch,
            "target": {m: sorted(tps) for m, tps in self.target.items()},
            "members": [m.to_json() for m in self.members.values()],
            "rebalances": self.rebalances,
            "moved": self.moved,
        }

    @classmethod
    def restore(
        cls, doc: Mapping, session_timeout_ms: int, heartbeat_interval_ms: int, now: float
    ) -> "Group":
        """The group from a snapshot; every member's session restarts now (a coordinator restart is
        not the members' fault)."""
        deadline = now + session_timeout_ms / 1000
        return cls(
            name=doc["name"],
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            assignor=AssignorName(doc["assignor"]),
            epoch=doc["epoch"],
            target_epoch=doc["target_epoch"],
            target={m: frozenset((t, p) for t, p in tps) for m, tps in doc["target"].items()},
            members={d["member_id"]: Member.from_json(d, deadline) for d in doc["members"]},
            rebalances=doc.get("rebalances", 0),
            moved=doc.get("moved", 0),
        )

    # --- internals -----------------------------------------------------------------------------
    def _join(self, member_id: str, instance_id: str | None, topics: frozenset[str], now: float) -> Member:
        deadline = now + self.session_timeout_ms / 1000
        old = self.members.get(member_id)
        if old is not None:  # a rejoin after being fenced on its side: start over
            self._remove(member_id)
        if instance_id is not None:
            twin = next((m for m in self.members.values() if m.instance_id == instance_id), None)
            if twin is not None:
                # A restarted static member: it takes over the old one's partitions and target
                # without a rebalance; the old id is fenced.
                del self.members[twin.member_id]
                member = Member(member_id, instance_id, topics, twin.epoch, twin.epoch, twin.owned, deadline)
                self.members[member_id] = member
                if twin.member_id in self.target:
                    self.target[member_id] = self.target.pop(twin.member_id)
                if topics != twin.topics:
                    self._bump()
                return member
        member = Member(member_id, instance_id, topics, JOIN_EPOCH, JOIN_EPOCH, frozenset(), deadline)
        self.members[member_id] = member
        self._bump()
        return member

    def _remove(self, member_id: str) -> None:
        # Its target stays until the next ``_retarget``, which counts its partitions as moved.
        self.members.pop(member_id, None)
        self._bump()

    def _bump(self) -> None:
        self.epoch += 1

    def _retarget(self, partitions: Mapping[str, Sequence[str]]) -> None:
        known = {t: list(partitions.get(t, ())) for t in self.topics()}
        wanted = {t: len(ps) for t, ps in known.items()}
        assigned = {t: sum(1 for m in self.target.values() for tp in m if tp[0] == t) for t in wanted}
        if self.target_epoch == self.epoch and wanted == assigned:
            return
        subscriptions = {m.member_id: m.topics for m in self.members.values()}
        before = dict(self.target)
        self.target = assign(self.assignor, subscriptions, known, before)
        if wanted != assigned and self.target_epoch == self.epoch:
            self._bump()  # partitions were added: a new target is a new epoch
        self.target_epoch = self.epoch
        moved = moves(before, self.target)
        if moved:
            self.rebalances += 1
            self.moved += moved

    def _reconcile(self, member: Member) -> HeartbeatReply:
        target = self.target.get(member.member_id, frozenset())
        keep = member.owned & target
        revoking = member.owned - target
        if not revoking:
            taken = {tp for m in self.members.values() if m is not member for tp in m.owned}
            member.owned = keep | frozenset(tp for tp in target if tp not in taken)
            if member.epoch != self.target_epoch:
                member.previous_epoch, member.epoch = member.epoch, self.target_epoch
        return self._reply(member, keep if revoking else member.owned, target - member.owned)

    def _reply(
        self, member: Member, assignment: frozenset[TopicPartition], pending: frozenset[TopicPartition]
    ) -> HeartbeatReply:
        return HeartbeatReply(
            member_id=member.member_id,
            epoch=member.epoch,
            assignment=assignment,
            pending=pending,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            session_timeout_ms=self.session_timeout_ms,
        )
