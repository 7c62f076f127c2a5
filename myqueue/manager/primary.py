"""The primary manager: the single writer of cluster configuration, and the seed's produce path.

Two locks with one job each: ``_write_lock`` serialises configuration changes end to end
(check, broker calls, persist, apply; they are rare and may wait on a broker), ``_state_lock``
is held only for the instant of applying events or copying what a reader needs, so produce
calls never wait behind a slow configuration change. Producer round-robin cursors live in
memory (one lock per producer also keeps each producer's messages in order); after a restart a
producer's rotation starts again at the topic's first partition. Concurrent produces to one
partition are grouped into one broker append (``appender.GroupAppender``).

The state never drifts from the event log. Each configuration batch is appended with a batch id
of its own; when the append's outcome is unknown (the COMMIT acknowledgement was lost, the store
did not answer within ``write_timeout``, a sequence number was taken), the primary re-reads the
log and rebuilds its state from it before the next write, and asks the store whether its batch
is in the log: found, the change is answered as applied; not found, as not applied; no answer,
as OUTCOME_UNKNOWN. Waiting for the write lock and each store call are bounded by
``write_timeout``: past it the write answers 503 with Retry-After and the lock is free again, so
writes behind a hung store call never queue for ever.

Memory mode (``recover=True``): a restarted primary has forgotten everything, but the replica still
holds the last view it synced and the brokers still host their partitions. So the primary starts
*recovering*: it refuses every write and produce (UNAVAILABLE, retry) but brokers registering
themselves (``POST /v1/brokers``, the supervisor, the operator) until the replica offers its
last view (``POST /v1/view``; the replica does so when it sees a new epoch that is recovering),
rebuilds brokers, topics, placement and seed producers from it, and only then serves. A producer id
is answered only once the replica holds the view that names it, so a recovered primary can never
hand out again an id an application still holds: an old producer id keeps producing into its own
topic, never into another's.
"""

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import TypeVar

from myqueue.core import defaults
from myqueue.core.names import (
    validate_broker_address,
    validate_broker_name,
    validate_listeners,
    validate_partition,
    validate_topic,
)
from myqueue.core.placement import place_partitions, plan_add_brokers
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.core.storage import OutcomeUnknown, StorageUnavailable
from myqueue.core.topicconfig import check_config, merged
from myqueue.core.view import BrokerInfo, ClusterView, Placement, SeedProducer, ViewUpdate

from .appender import GroupAppender
from .brokers import BrokerClient, BrokerLostPartition
from .coordinator import Coordinator
from .launcher import Launcher
from .state import (
    ClusterState,
    EventType,
    Registration,
    check_new_broker,
    check_new_partition,
    check_new_producer,
    event,
    next_round_robin,
    recovery_events,
    require_broker,
    require_topic,
)
from .store import MetaStore

log = logging.getLogger(__name__)
STREAM = "cluster"
T = TypeVar("T")
# produce_on_loop's callback: ((topic, partition, offset), None), or (None, the error)
Produced = Callable[[tuple[str, str, int] | None, Exception | None], None]


class _StoreTimeout(Exception):
    """A store call did not return within the write bound (it may still be running)."""


class Primary:
    """Owns ClusterState: every configuration write and every seed-path produce goes through here."""

    def __init__(
        self,
        store: MetaStore,
        launcher: Launcher,
        brokers: BrokerClient,
        rng: random.Random | None = None,
        shared_storage: bool = False,
        write_timeout: float = defaults.CONFIG_WRITE_TIMEOUT_S,
        *,
        recover: bool = False,
        confirm_timeout_s: float = defaults.REPLICA_CONFIRM_TIMEOUT_S,
    ):
        self._store = store
        self._shared_storage = (
            shared_storage  # the brokers keep records in PostgreSQL: a moved partition keeps them
        )
        self._write_timeout = write_timeout
        self._stale = False  # the log may hold events the state lacks: re-read it before the next write
        self._launcher = launcher
        self._brokers = brokers
        self._rng = rng
        self._state = ClusterState()
        self._write_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._ready: dict[str, bool] = {}
        self._changed = threading.Condition()
        self._version = 0
        self.epoch = uuid.uuid4().hex  # lets the replica notice a restarted (memory-mode) primary
        self._cursors: dict[int, int] = {}
        self._producer_locks: dict[int, threading.Lock] = {}
        self._producer_locks_guard = threading.Lock()
        self._appender = GroupAppender(self._append_batch)
        self._stop = threading.Event()
        self._loaded = False
        # Memory mode: serve nothing until the replica's last view is recovered (see the module doc).
        self._recover = recover
        self._confirm_timeout_s = confirm_timeout_s
        self._recovered = threading.Event()
        if not recover:
            self._recovered.set()
        self._replica_version = -1  # the newest version of this epoch the replica asked beyond (holds)
        # The consumer-group coordinator lives here (manager/coordinator.py says why).
        self.groups = Coordinator(store, brokers, self.topic_partitions, self._partition_address)
        self._deleting: set[str] = set()  # topics whose deletion is under way (never re-hosted meanwhile)

    # --- lifecycle ----------------------------------------------------------------------------
    def load(self) -> None:
        for ev in self._store.load(STREAM):
            self._state.apply(ev)
        self.groups.load()
        self._loaded = True
        log.info(
            "loaded %d events: %d brokers, %d topics, %d producers",
            self._state.applied,
            len(self._state.brokers),
            len(self._state.topics),
            len(self._state.producers),
        )

    def ready(self) -> tuple[bool, str]:
        if not self._loaded:
            return False, "loading configuration"
        if not self._store.ready():
            return False, "metadata store unavailable"
        if not self._recovered.is_set():
            # Ready all the same: the replica (and brokers registering) must be able to reach us,
            # also through a Kubernetes Service, which routes only to ready pods.
            return (
                True,
                "ready; recovering: waiting for the replica's last view (writes answer 503 until then)",
            )
        return True, "ready"

    def start_background(self) -> None:
        threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True).start()
        threading.Thread(
            target=self.groups.run_expiry, args=(self._stop,), name="group-sessions", daemon=True
        ).start()

    def stop(self) -> None:
        """Stop the reconciler and end every view long-poll now (the service is draining)."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()

    # --- events and the view ------------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The write lock, waited for at most ``write_timeout``; the state caught up with the log first."""
        if not self._write_lock.acquire(timeout=self._write_timeout):
            raise _busy("another configuration write is still running; nothing was changed")
        try:
            if self._stale:
                self._replay()
            yield
        finally:
            self._write_lock.release()

    def _bounded(self, work: Callable[[], T]) -> T:
        """``work()`` in a thread of its own, given up on after ``write_timeout`` (it may still finish)."""
        outcome: dict[str, object] = {}
        done = threading.Event()

        def run() -> None:
            try:
                outcome["value"] = work()
            except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
                outcome["error"] = e
            finally:
                done.set()

        threading.Thread(target=run, name="config-store", daemon=True).start()
        if not done.wait(self._write_timeout):
            raise _StoreTimeout(f"the configuration store did not answer within {self._write_timeout:g} s")
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["value"]  # type: ignore[return-value]

    def _replay(self) -> None:
        """Rebuild the state from the log (after an unknown outcome). Called with _write_lock held."""
        try:
            events = self._bounded(lambda: self._store.load(STREAM))
        except Exception as e:  # noqa: BLE001 - any failure leaves the state stale: refuse the write
            raise _busy(f"the configuration store does not answer ({e}); nothing was changed") from e
        state = ClusterState()
        for ev in events:
            state.apply(ev)
        with self._state_lock:
            self._state = state
        self._stale = False
        self._bump()
        log.info("re-read the configuration log: %d events", state.applied)

    def _commit(self, events: list[dict]) -> None:
        """Persist, then apply. Called with _write_lock held.

        Returns once the batch is in the log and the state; raises a Refusal saying whether it is
        certainly not applied (UNAVAILABLE) or may be (OUTCOME_UNKNOWN).
        """
        if not events:
            return
        batch_id = uuid.uuid4().hex
        seq = self._state.applied
        try:
            self._bounded(lambda: self._store.write_events(STREAM, seq, events, batch_id))
        except StorageUnavailable as e:  # certainly not applied: the state still equals the log
            raise _busy(f"the configuration store is unavailable ({e}); nothing was changed") from e
        except _StoreTimeout as e:  # still running: it may commit after any answer we give
            self._stale = True
            raise _unknown(f"{e}: the change may or may not be applied") from e
        except Exception as e:  # noqa: BLE001 - OutcomeUnknown, a taken sequence number: ask the log
            self._stale = True
            log.warning(
                "configuration append of batch %s (event %d) failed: %s; re-reading the log", batch_id, seq, e
            )
            self._settle(batch_id, e)
            return
        with self._state_lock:
            for ev in events:
                self._state.apply(ev)
        self._bump()

    def _settle(self, batch_id: str, error: Exception) -> None:
        """After a failed append: catch up with the log, then answer whether the batch is in it."""
        try:
            self._replay()
            committed = self._bounded(lambda: self._store.batch_committed(STREAM, batch_id))
        except Exception as e:  # noqa: BLE001 - the store cannot say what happened
            self._stale = True
            raise _unknown(
                f"the configuration store lost its reply ({error}); the change may be applied"
            ) from e
        if not committed:
            raise _busy(f"the configuration change was not applied ({error}); retry") from error
        log.info("configuration batch %s was committed although its acknowledgement was lost", batch_id)

    def _bump(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def cluster_view(self, only: Collection[str] | None = None) -> ClusterView:
        """The configuration as the typed view: brokers with readiness, topics with placement (with
        ``only``, just those topics: a reconcile of one topic costs the same at 10 or 10,000)."""
        with self._state_lock:  # copied only: produces wait on this lock, building waits for nobody
            state = self._state
            names = state.topics.keys() if only is None else [t for t in only if t in state.topics]
            brokers = dict(state.brokers)
            listeners = {n: tuple(sorted(urls.items())) for n, urls in state.listeners.items()}
            topics = {t: list(state.topics[t].items()) for t in names}
            configs = {t: dict(state.configs[t]) for t in names if t in state.configs}
        return ClusterView(
            epoch=self.epoch,
            version=self._version,
            brokers={
                n: BrokerInfo(a, self._ready.get(n, False), listeners.get(n, ())) for n, a in brokers.items()
            },
            topics={t: tuple(Placement(p, b) for p, b in parts) for t, parts in topics.items()},
            configs=configs,
        )

    def view(self, only: Collection[str] | None = None) -> dict:
        """``GET /v1/metadata``'s answer (the wire JSON of ``cluster_view``), all topics or ``only``."""
        return self.cluster_view(only).to_json()

    def view_is_news(self, since: int, epoch: str | None) -> bool:
        """True when ``wait_view`` would answer at once (a newer view, or another epoch)."""
        return epoch != self.epoch or self._version > since or self._stop.is_set()

    def wait_view(self, since: int, epoch: str | None, wait_s: float, producers_known: int = 0) -> dict:
        """Long-poll: the view once it is newer than ``since`` (or at once for another epoch).

        The replica's answer also carries the seed producers (so that a restarted memory-mode
        primary can recover them from it) — in this epoch only those after the ``producers_known``
        the replica has (``producers_from``) — and whether this primary is still recovering; its
        ``since`` in this epoch tells us which version it holds."""
        deadline = time.monotonic() + wait_s
        with self._changed:
            if epoch == self.epoch and since > self._replica_version:
                self._replica_version = since
                self._changed.notify_all()
            while epoch == self.epoch and self._version <= since and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        with self._state_lock:
            known = (
                producers_known
                if epoch == self.epoch and producers_known <= len(self._state.producers)
                else 0
            )
            producers = tuple(
                SeedProducer(topic, partition) for topic, partition in self._state.producers[known:]
            )
        update = ViewUpdate(
            self.cluster_view(),
            producers=producers,
            producers_from=known,
            recovering=not self._recovered.is_set(),
        )
        return update.to_json()

    def recover(self, view: object) -> bool:
        """Rebuild the configuration from the replica's last view (its ``ViewUpdate`` JSON as
        offered on ``POST /v1/view``; None: it has none, a fresh cluster). Only a recovering
        primary takes it; returns False when it was not recovering."""
        with self._write_lock:
            if self._recovered.is_set():
                return False
            events = recovery_events(view, self._state)
            self._commit(events)
            self._recovered.set()
            self._bump()
        log.info(
            "recovered from the replica's view: %d brokers, %d topics, %d producers",
            len(self._state.brokers),
            len(self._state.topics),
            len(self._state.producers),
        )
        return True

    def _require_recovered(self) -> None:
        if not self._recovered.is_set():
            raise Refusal(
                Reason.UNAVAILABLE,
                "the primary restarted and is recovering its configuration from the replica; retry",
            )

    def _await_replica(self, version: int) -> None:
        """Memory mode: return once the replica holds ``version`` (it then knows a new producer id)."""
        deadline = time.monotonic() + self._confirm_timeout_s
        with self._changed:
            while self._replica_version < version:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    raise Refusal(
                        Reason.UNAVAILABLE,
                        f"the replica did not confirm the registration within "
                        f"{self._confirm_timeout_s:g} s (memory mode hands out a producer id only "
                        "once the replica holds it); register again",
                    )
                self._changed.wait(remaining)

    def seed_topics(self) -> dict:
        with self._state_lock:
            return self._state.seed_topics()

    def topic_partitions(self) -> dict[str, list[str]]:
        """Every topic's partitions, in creation order."""
        with self._state_lock:
            return {t: list(parts) for t, parts in self._state.topics.items()}

    def broker_names(self) -> list[str]:
        with self._state_lock:
            return list(self._state.brokers)

    def _ready_brokers(self, excluding: Collection[str] = frozenset()) -> list[str]:
        return [n for n in self._state.brokers if self._ready.get(n) and n not in excluding]

    def _address(self, broker: str) -> str:
        with self._state_lock:
            return self._state.brokers[broker]

    # --- topics and producers -----------------------------------------------------------------------
    def _plan_partition(self, topic: str, partition: str) -> dict:
        """Place a new partition, host it on its broker, return the event. _write_lock held."""
        check_new_partition(self._state, topic, partition)
        broker = place_partitions([partition], self._ready_brokers(), self._rng)[partition]
        try:
            self._brokers.host(self._address(broker), topic, partition, self._config_of(topic))
        except BrokerLostPartition as e:  # not possible for PUT, but keep the mapping total
            raise Refusal(Reason.UNAVAILABLE, str(e)) from e
        return event(EventType.PARTITION_ADDED, topic=topic, partition=partition, broker=broker)

    def add_partition(self, topic: object, partition: object) -> str:
        topic, partition = validate_topic(topic), validate_partition(partition)
        self._require_recovered()
        with self._writing():
            ev = self._plan_partition(topic, partition)
            self._commit([ev])
        log.info("created %s:%s on %s", topic, partition, ev["broker"])
        return ev["broker"]

    def _config_of(self, topic: str) -> dict[str, int]:
        with self._state_lock:
            return self._state.config_of(topic)

    def describe_topic(self, topic: object) -> dict:
        """The topic's configuration and, per partition, its broker and log (start, end, bytes) as
        that broker reports it now (null fields when it does not answer within 2 s)."""
        topic = validate_topic(topic)
        with self._state_lock:
            require_topic(self._state.topics, topic)
            parts = list(self._state.topics[topic].items())
            config = self._state.config_of(topic)
            addresses = dict(self._state.brokers)
        partitions = []
        for partition, broker in parts:
            entry: dict = {"partition": partition, "broker": broker}
            log_info: dict = {"log_start_offset": None, "end_offset": None, "stored_bytes": None}
            address = addresses.get(broker) if broker else None
            if address is not None:
                try:
                    found = self._brokers.describe(address, topic, partition)
                    log_info = {k: found[k] for k in log_info}
                except (Refusal, BrokerLostPartition, KeyError) as e:
                    log.debug("describing %s:%s on %s failed: %s", topic, partition, broker, e)
            entry.update(log_info)
            partitions.append(entry)
        return {"topic": topic, "config": config, "partitions": partitions}

    def alter_topic_config(self, topic: object, change: object, *, replace: bool = False) -> dict[str, int]:
        """Change the topic's configuration (keys given; null: back to unlimited; ``replace``: the
        whole configuration), tell the brokers hosting its partitions, and answer the new one."""
        topic = validate_topic(topic)
        checked = check_config(change, allow_null=True)
        self._require_recovered()
        if topic in self._deleting:  # before the write lock, which the delete holds
            raise Refusal(Reason.TOPIC_BEING_DELETED, f"topic {topic} is being deleted")
        with self._writing():
            require_topic(self._state.topics, topic)
            if topic in self._deleting:
                raise Refusal(Reason.TOPIC_BEING_DELETED, f"topic {topic} is being deleted")
            config = merged({} if replace else self._state.config_of(topic), checked)
            if config != self._state.config_of(topic):
                self._commit([event(EventType.TOPIC_CONFIGURED, topic=topic, config=config)])
            with self._state_lock:
                owners = [(p, b) for p, b in self._state.topics[topic].items() if b]
        for partition, broker in owners:  # best effort now; the reconciler sends it to any it missed
            try:
                self._brokers.host(self._address(broker), topic, partition, config)
            except (Refusal, BrokerLostPartition, KeyError) as e:
                log.warning("could not send %s's configuration to %s yet: %s", topic, broker, e)
        log.info("topic %s configuration: %s", topic, config)
        return config

    def delete_topic(self, topic: object) -> list[str]:
        """Delete the topic: every partition's data and positions on its broker (PostgreSQL: the rows,
        through any ready broker when it has none), then the configuration. Answers the partitions.

        While it runs the topic is never re-hosted, and a second delete or an alter is refused
        (TOPIC_BEING_DELETED). A broker that fails its purge fails the delete (UNAVAILABLE) with the
        topic still there: a retry purges what is left (purges are idempotent)."""
        topic = validate_topic(topic)
        self._require_recovered()
        with self._state_lock:
            require_topic(self._state.topics, topic)
            if topic in self._deleting:
                raise Refusal(Reason.TOPIC_BEING_DELETED, f"topic {topic} is being deleted")
            self._deleting.add(topic)
        try:
            with self._writing():
                require_topic(self._state.topics, topic)
                with self._state_lock:
                    parts = list(self._state.topics[topic].items())
                ready = self._ready_brokers()
                for partition, broker in parts:
                    target = broker or (ready[0] if self._shared_storage and ready else None)
                    if target is None:
                        continue  # memory mode, no broker: nothing holds its records
                    try:
                        self._brokers.purge(self._address(target), topic, partition)
                    except BrokerLostPartition:
                        pass  # not hosted there: nothing to delete
                    except Refusal as e:
                        raise Refusal(
                            Reason.UNAVAILABLE,
                            f"could not delete {topic}:{partition} on {target} ({e.message}); the topic "
                            "still exists, retry the delete",
                        ) from e
                self._commit([event(EventType.TOPIC_DELETED, topic=topic)])
        finally:
            with self._state_lock:
                self._deleting.discard(topic)
        log.info("deleted topic %s (%d partitions)", topic, len(parts))
        return [p for p, _ in parts]

    def register_producer(self, topic: object, partition: object | None) -> int:
        topic = validate_topic(topic)
        partition = None if partition is None else validate_partition(partition)
        self._require_recovered()
        with self._writing():
            check_new_producer(self._state)
            events = []
            if partition is None:
                require_topic(self._state.topics, topic)
            elif partition not in self._state.topics.get(topic, {}):
                events.append(self._plan_partition(topic, partition))  # the seed creates it
            producer_id = len(self._state.producers)
            events.append(event(EventType.PRODUCER_REGISTERED, topic=topic, partition=partition))
            self._commit(events)
            version = self._version
        if self._recover:
            self._await_replica(version)
        return producer_id

    def _producer_lock(self, producer_id: int) -> threading.Lock:
        with self._producer_locks_guard:
            lock = self._producer_locks.get(producer_id)
            if lock is None:
                lock = self._producer_locks[producer_id] = threading.Lock()
            return lock

    def produce(self, producer_id: int, value: bytes) -> tuple[str, str, int]:
        """Append one message for a registered producer; returns (topic, partition, offset)."""
        self._require_recovered()
        with self._producer_lock(producer_id):
            with self._state_lock:
                topic, partition, cursor, address = self._route(producer_id)
            # The broker's slot is held while queued for the grouped append, so a hung broker
            # holds at most its bulkhead's share of this manager's threads.
            with self._brokers.guard.slot(address):
                offset = self._appender.submit(topic, partition, value)
            self._cursors[producer_id] = cursor
        return topic, partition, offset

    def produce_on_loop(self, producer_id: int, value: bytes, done: Produced) -> bool:
        """``produce`` from the server's loop thread, holding no thread (``net/loop.py``): in a later
        turn of the loop, ``done((topic, partition, offset), None)`` or ``done(None, error)``, where a
        BrokerLostPartition means "nothing stored: ``produce`` it" (that re-hosts the partition).
        False, nothing started: whatever would wait here — a lock another thread holds, an append of
        the partition under way (then the message joins the group commit there), the broker's loop
        connection busy or its circuit not closed — is left to ``produce``. Refusals raise, as there."""
        self._require_recovered()
        lock = self._producer_lock(producer_id)
        if not lock.acquire(blocking=False):
            return False
        started = False
        try:
            if not self._state_lock.acquire(blocking=False):
                return False
            try:
                topic, partition, cursor, address = self._route(producer_id)
            finally:
                self._state_lock.release()
            if not self._appender.begin_alone(topic, partition):
                return False

            def sent(base: int | None, error: Exception | None) -> None:
                try:
                    self._appender.end_alone(topic, partition)
                    if error is None:
                        self._cursors[producer_id] = cursor
                finally:
                    lock.release()
                done(None if base is None else (topic, partition, base), error)

            try:
                started = self._brokers.post_records_on_loop(address, topic, partition, [value], sent)
            finally:
                if not started:
                    self._appender.end_alone(topic, partition)
            return started
        finally:
            if not started:
                lock.release()

    def appends_idle(self) -> bool:
        """No seed append under way to any partition: a produce arriving now can go from the loop
        (``produce_on_loop``); while some are, produces go to the threads, where they group."""
        return self._appender.idle()

    def _route(self, producer_id: int) -> tuple[str, str, int, str]:
        """Where a producer's next message goes: (topic, partition, the cursor after it, the broker's
        address). Called with the producer's lock and the state lock held."""
        topic, fixed = self._state.producer(producer_id)
        partitions = self._state.topics.get(topic)
        if partitions is None or (fixed is not None and fixed not in partitions):
            raise Refusal(Reason.TOPIC_NOT_FOUND, f"producer {producer_id}'s topic {topic} was deleted")
        cursor = self._cursors.get(producer_id, 0)
        if fixed is None:
            partition, cursor = next_round_robin(self._state.partitions_of(topic), cursor)
        else:
            partition = fixed
        address = self._address_in_state(topic, partition)
        if address is None:
            raise Refusal(Reason.NO_BROKER, f"partition {topic}:{partition} has no broker right now; retry")
        return topic, partition, cursor, address

    def _partition_address(self, topic: str, partition: str) -> str | None:
        with self._state_lock:
            return self._address_in_state(topic, partition)

    def _address_in_state(self, topic: str, partition: str) -> str | None:
        """The address of the partition's broker, None when it has none. State lock held."""
        broker = self._state.topics.get(topic, {}).get(partition)
        return self._state.brokers.get(broker) if broker else None

    def _append_batch(self, topic: str, partition: str, values: list[bytes]) -> int:
        """Append values as one batch on the partition's current broker; returns the base offset."""
        address = self._partition_address(topic, partition)
        if address is None:
            raise Refusal(Reason.NO_BROKER, f"partition {topic}:{partition} has no broker right now; retry")
        try:
            return self._brokers.post_records(address, topic, partition, values)
        except BrokerLostPartition:
            # The broker restarted and has not been told again yet (it refused, storing nothing):
            # tell it now, then retry once.
            self._brokers.host(address, topic, partition, self._config_of(topic))
            try:
                return self._brokers.post_records(address, topic, partition, values)
            except BrokerLostPartition as e:
                raise Refusal(Reason.UNAVAILABLE, f"partition {topic}:{partition} is moving; retry") from e

    # --- brokers -------------------------------------------------------------------------------------
    def _await_ready(self, address: str) -> bool:
        """Poll the broker's readiness until BROKER_READY_TIMEOUT_S; True once it is ready."""
        deadline = time.monotonic() + defaults.BROKER_READY_TIMEOUT_S
        while not self._brokers.ready(address):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)  # polling a condition with a deadline
        return True

    def add_broker(self, name: object) -> str:
        name = validate_broker_name(name)
        self._require_recovered()
        with self._writing():
            check_new_broker(self._state, name)
            address = self._launcher.start(name)
            if not self._await_ready(address):
                self._launcher.stop(name)
                raise Refusal(
                    Reason.UNAVAILABLE,
                    f"broker {name} did not become ready within {defaults.BROKER_READY_TIMEOUT_S:.0f} s",
                )
            self._ready[name] = True
            try:
                self._commit([event(EventType.BROKER_REGISTERED, name=name, address=address)])
            except (Refusal, StorageUnavailable):  # not recorded: do not leave the broker running unknown
                self._ready.pop(name, None)
                self._launcher.stop(name)
                raise
            self._place_unassigned()
        log.info("added broker %s at %s", name, address)
        return address

    def register_broker(self, name: object, address: object, listeners: object = None) -> Registration:
        """Record a broker started elsewhere (supervisor, operator), with its further advertised
        addresses (``listeners``: the whole set; those left out are removed)."""
        name = validate_broker_name(name)
        address = validate_broker_address(address)
        named = validate_listeners(listeners)
        with self._writing():  # also while recovering: the recovered view keeps a broker registered meanwhile
            known = self._state.brokers.get(name)
            if known == address and self._state.listeners.get(name, {}) == named:
                return Registration.UP_TO_DATE
            if known is None:
                check_new_broker(self._state, name)
            registered = event(EventType.BROKER_REGISTERED, name=name, address=address)
            if named:
                registered["listeners"] = named
            self._commit([registered])
        self.check_broker(name)
        return Registration.REGISTERED if known is None else Registration.UPDATED

    def remove_broker(self, name: object, force: bool = False) -> tuple[list[str], int]:
        """Remove one broker (or ``all``); its partitions are re-placed on the remaining ready brokers.

        All or nothing: every check comes first (the brokers exist, the launcher can say which it
        runs, no records would be lost unless ``force``); then the launcher stops the brokers it
        started (a self-registered broker is only forgotten) and the change is committed. If a stop
        or the commit fails, the brokers already stopped are started again and the configuration is
        left as it was. Returns the removed names and how many partitions moved. In PostgreSQL mode
        a moved partition keeps its data (storage is shared); in memory mode its data goes with the
        broker, so a broker holding records is refused without ``force``.
        """
        if name != "all":
            name = validate_broker_name(name)
        self._require_recovered()
        with self._writing():
            if name == "all":
                names = list(self._state.brokers)
            else:
                require_broker(self._state, name)
                names = [name]
            started = self._launcher.started(names)
            if not force and not self._shared_storage:
                self._refuse_record_loss(names)
            events, moved = self._removal_events(names)
            stopped: list[str] = []
            try:
                for broker in names:
                    if broker in started:
                        self._launcher.stop(broker)
                        stopped.append(broker)
                self._commit(events)
            except (Refusal, StorageUnavailable, OutcomeUnknown) as e:
                raise self._roll_back_removal(names, stopped, e) from e
            for broker in names:
                self._ready.pop(broker, None)
            self._host_assigned(events)
        log.info("removed brokers %s (%d partitions moved)", names, moved)
        return names, moved

    def rebalance(self, add_brokers: object, dry_run: bool = False, force: bool = False) -> dict:
        """Move partitions onto ``add_brokers`` until each holds its share (``plan_add_brokers``).

        The named brokers must be registered and ready. PostgreSQL store: a moved partition keeps
        its log, log start and positions (shared storage). Memory store: partitions holding records
        stay where they are unless ``force`` (their records would be lost), and the answer counts
        them. After the commit each moved partition is hosted on its new broker, then released by
        the old one (its clients get NOT_HERE and refresh their metadata).
        """
        if (
            not isinstance(add_brokers, list)
            or not add_brokers
            or len(add_brokers) > defaults.MAX_REBALANCE_BROKERS
        ):
            raise Refusal(
                Reason.INVALID_REQUEST,
                f"add_brokers must be a non-empty list of at most {defaults.MAX_REBALANCE_BROKERS} broker names",
            )
        names = sorted({validate_broker_name(n) for n in add_brokers})
        self._require_recovered()
        with self._writing():
            for name in names:
                require_broker(self._state, name)
            unready = [n for n in names if not self._ready.get(n)]
            if unready:
                raise Refusal(Reason.UNAVAILABLE, f"broker(s) {', '.join(unready)} not ready: nothing moved")
            placement = {(t, p): b for t, parts in self._state.topics.items() for p, b in parts.items()}
            holding = set() if force or self._shared_storage else self._partitions_with_records()
            plan = plan_add_brokers(placement, self._ready_brokers(), names, lambda tp: tp not in holding)
            skipped = sum(1 for tp, b in placement.items() if tp in holding and b not in names)
            moves = [{"topic": t, "partition": p, "from": old, "to": new} for (t, p), old, new in plan]
            if not dry_run and moves:
                events = [
                    event(
                        EventType.PARTITION_ASSIGNED,
                        topic=m["topic"],
                        partition=m["partition"],
                        broker=m["to"],
                    )
                    for m in moves
                ]
                self._commit(events)
                self._host_assigned(events)
                for m in moves:
                    self._release(m["from"], m["topic"], m["partition"])
        log.info(
            "rebalance onto %s: %d partition(s) %s", names, len(moves), "planned" if dry_run else "moved"
        )
        answer = {"moves": moves, "partitions_moved": 0 if dry_run else len(moves), "dry_run": dry_run}
        if skipped:
            answer["skipped_with_records"] = skipped
        return answer

    def _partitions_with_records(self) -> set[tuple[str, str]]:
        """Memory store: the partitions whose broker holds records (unknown counts as holding). _write_lock held."""
        holding: set[tuple[str, str]] = set()
        for broker in self._state.brokers:
            try:
                counts = self._records_held(broker)
            except (Refusal, BrokerLostPartition):
                holding |= set(self._state.partitions_on(broker))
                continue
            holding |= {tp for tp, count in counts.items() if count is None or count > 0}
        return holding

    def _records_held(self, broker: str) -> dict[tuple[str, str], int | None]:
        """Memory store: the end offset (records held) of each partition assigned to ``broker``, as
        the broker lists them; None for one it does not list. Raises Refusal or BrokerLostPartition
        when it cannot be asked. _write_lock held."""
        owned = set(self._state.partitions_on(broker))
        if not owned:
            return {}
        listed = self._brokers.list_partitions(self._address(broker))["partitions"]
        ends = {(p["topic"], p["partition"]): int(p["end_offset"]) for p in listed}
        return {tp: ends.get(tp) for tp in owned}

    def _release(self, broker: str, topic: str, partition: str) -> None:
        """Best effort: the old owner stops serving a moved partition (the reconciler's check of
        that broker would otherwise find it hosting a partition it no longer owns)."""
        try:
            self._brokers.unhost(self._address(broker), topic, partition)
        except (Refusal, BrokerLostPartition) as e:
            log.warning("could not release %s:%s on %s: %s", topic, partition, broker, e)

    def _removal_events(self, names: list[str]) -> tuple[list[dict], int]:
        """The events that move the leaving brokers' partitions and forget the brokers. _write_lock held."""
        targets = self._ready_brokers(excluding=set(names))
        events: list[dict] = []
        moved = 0
        for broker in names:
            owned = self._state.partitions_on(broker)
            placement = (
                place_partitions([f"{t}\0{p}" for t, p in owned], targets, self._rng) if targets else {}
            )
            for t, p in owned:
                target = placement.get(f"{t}\0{p}")
                events.append(event(EventType.PARTITION_ASSIGNED, topic=t, partition=p, broker=target))
                moved += target is not None
            events.append(event(EventType.BROKER_REMOVED, name=broker))
        return events, moved

    def _refuse_record_loss(self, names: list[str]) -> None:
        """Memory mode: refuse to remove brokers whose assigned partitions hold records. _write_lock held."""
        held: dict[str, int] = {}
        for broker in names:
            try:
                counts = self._records_held(broker)
            except (Refusal, BrokerLostPartition) as e:
                raise Refusal(
                    Reason.WOULD_LOSE_RECORDS,
                    f"cannot count the records of broker {broker} ({e}); its "
                    f"{len(self._state.partitions_on(broker))} partition(s) may hold records that removing "
                    "it loses (memory mode): repeat with force to remove it anyway",
                ) from e
            count = sum(n for n in counts.values() if n)  # a partition it does not list holds nothing there
            if count:
                held[broker] = count
        if held:
            detail = ", ".join(f"{broker}: {count}" for broker, count in held.items())
            raise Refusal(
                Reason.WOULD_LOSE_RECORDS,
                f"removing would lose {sum(held.values())} record(s) ({detail}): in memory mode a broker's "
                "records go with it; repeat with force to remove anyway",
            )

    def _roll_back_removal(self, names: list[str], stopped: list[str], error: Exception) -> Refusal:
        """Start again what a failed removal stopped; the refusal to answer. _write_lock held."""
        failed: list[str] = []
        for broker in stopped:
            try:
                address = self._launcher.start(broker)
                if address != self._state.brokers.get(broker):
                    self._commit([event(EventType.BROKER_REGISTERED, name=broker, address=address)])
                if not self._await_ready(address):
                    failed.append(broker)
            except (Refusal, StorageUnavailable) as e:
                log.warning("rolling back the removal: could not restart %s: %s", broker, e)
                failed.append(broker)
        for broker in stopped:
            self.check_broker(broker)  # marks it ready again and re-hosts its partitions
        message = str(error.message if isinstance(error, Refusal) else error)
        outcome = "nothing was changed" + (f" (restarted {', '.join(stopped)})" if stopped else "")
        if failed:
            outcome = f"still configured, but {', '.join(failed)} did not come back and is not ready"
        reason = Reason.UNAVAILABLE
        if isinstance(error, Refusal):
            reason = error.reason
        elif isinstance(error, OutcomeUnknown):
            reason = Reason.OUTCOME_UNKNOWN
        return Refusal(reason, f"could not remove {', '.join(names)}: {message}; {outcome}")

    def test_broker(self, name: object) -> list[str]:
        name = validate_broker_name(name)
        with self._state_lock:
            require_broker(self._state, name)
            address = self._state.brokers[name]
        result = self._brokers.selftest(address)
        if not result.get("passed"):
            raise Refusal(Reason.UNAVAILABLE, f"broker {name} failed its self-test: {result.get('failed')}")
        return list(result.get("checks", []))

    def _host_assigned(self, events: list[dict]) -> None:
        """Best effort: tell new owners about their partitions now (the reconciler retries)."""
        for ev in events:
            if ev["type"] == EventType.PARTITION_ASSIGNED.value and ev["broker"]:
                try:
                    self._brokers.host(
                        self._address(ev["broker"]),
                        ev["topic"],
                        ev["partition"],
                        self._config_of(ev["topic"]),
                    )
                except Refusal as e:
                    log.warning(
                        "could not host %s:%s on %s yet: %s", ev["topic"], ev["partition"], ev["broker"], e
                    )

    def _place_unassigned(self) -> None:
        """Give partitions left without a broker (after ``rm all``) to ready brokers. _write_lock held."""
        orphans = self._state.unassigned()
        ready = self._ready_brokers()
        if not orphans or not ready:
            return
        placement = place_partitions([f"{t}\0{p}" for t, p in orphans], ready, self._rng)
        events = [
            event(EventType.PARTITION_ASSIGNED, topic=t, partition=p, broker=placement[f"{t}\0{p}"])
            for t, p in orphans
        ]
        self._commit(events)
        self._host_assigned(events)

    # --- reconciliation ----------------------------------------------------------------------------------
    def check_broker(self, name: str) -> bool:
        """Health-check one broker and push any partition it should host but does not."""
        with self._state_lock:
            address = self._state.brokers.get(name)
            assigned = self._state.partitions_on(name)
            configs = {t: dict(c) for t, c in self._state.configs.items()}
        if address is None:
            return False
        try:
            hosted = {
                (p["topic"], p["partition"]): p.get("config")
                for p in self._brokers.list_partitions(address)["partitions"]
            }
            for topic, partition in assigned:
                if topic in self._deleting:
                    continue  # being deleted: never hosted again
                config = configs.get(topic, {})
                if (topic, partition) not in hosted:
                    log.info("re-hosting %s:%s on %s", topic, partition, name)
                    self._brokers.host(address, topic, partition, config)
                elif hosted[(topic, partition)] != config:
                    log.info("sending %s's configuration to %s for %s", topic, name, partition)
                    self._brokers.host(address, topic, partition, config)
            ok = True
        except (Refusal, BrokerLostPartition) as e:
            log.debug("broker %s not ready: %s", name, e)
            ok = False
        if self._ready.get(name) != ok:
            self._ready[name] = ok
            log.info("broker %s is %s", name, "ready" if ok else "NOT ready")
            self._bump()
        return ok

    def relaunch_known_brokers(self) -> None:
        """After a restart, make sure every broker in the configuration runs (PostgreSQL mode)."""
        if not self._launcher.can_start:
            return
        for name in self.broker_names():
            try:
                address = self._launcher.start(name)
            except Refusal as e:
                log.warning("could not relaunch %s: %s", name, e)
                continue
            if address != self._state.brokers.get(name):
                self.register_broker(name, address)

    def _reconcile_loop(self) -> None:
        try:
            self.relaunch_known_brokers()
        except Exception:  # noqa: BLE001 - the loop below keeps retrying what matters
            log.exception("relaunching known brokers failed")
        while not self._stop.is_set():
            try:
                self._reconcile_once()
            except Exception:  # noqa: BLE001 - a reconciler must outlive any one failure
                log.exception("reconcile pass failed")
            self._stop.wait(defaults.RECONCILE_INTERVAL_S)

    def _reconcile_once(self) -> None:
        for name in self.broker_names():
            self.check_broker(name)
        with self._state_lock:
            orphans = bool(self._state.unassigned())
        if orphans and self._write_lock.acquire(timeout=0.1):
            try:
                if self._stale:
                    self._replay()
                self._place_unassigned()
            except Refusal as e:
                log.warning("placing unassigned partitions failed: %s", e)
            finally:
                self._write_lock.release()


def _busy(message: str) -> Refusal:
    """Nothing was changed, try again later: 503 + Retry-After, on the seed's endpoints too."""
    return Refusal(Reason.UNAVAILABLE, message, status=503)


def _unknown(message: str) -> Refusal:
    """The change may or may not be applied: 503 OUTCOME_UNKNOWN + Retry-After."""
    return Refusal(Reason.OUTCOME_UNKNOWN, message, status=503)
