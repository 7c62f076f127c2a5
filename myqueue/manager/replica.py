"""The read-only replica: serves reads and the seed's consumers from a view synced from the primary.

The view arrives by long-polling the primary's ``/v1/view`` (an answer comes as soon as the
configuration changes, or every ``VIEW_LONG_POLL_S`` otherwise) and is saved in the store, so a
replica restarted while the primary is down still serves. Consumers are the replica's own state
(it never writes cluster configuration): their registrations are events in the ``consumers``
stream, their positions live on the brokers beside the data (group ``myqueue.seed.c<id>``), so
both survive restarts in PostgreSQL mode.

A memory-mode primary that restarted has forgotten the configuration and says it is recovering:
the replica then offers it its last view (``POST /v1/view``) and keeps serving that view until the
primary answers with the recovered one, so consumers never see their topics vanish meanwhile.
"""

import dataclasses
import logging
import threading
import time
from collections.abc import Collection

from myqueue.core import defaults
from myqueue.core.names import seed_group, validate_partition, validate_topic
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.core.view import ClusterView, ViewError, ViewUpdate
from myqueue.net.envelope import CallFailed, EnvelopeClient

from .brokers import BrokerClient, BrokerLostPartition
from .state import ConsumerRegistry, EventType, event, require_partition, require_topic
from .store import MetaStore

log = logging.getLogger(__name__)
STREAM = "consumers"
VIEW_NAME = "replica"


class Replica:
    """Serves the cluster view, consumer registration, consume and size."""

    def __init__(self, store: MetaStore, primary_url: str, brokers: BrokerClient, token: str | None = None):
        self._store = store
        self._primary_url = primary_url.rstrip("/")
        self._brokers = brokers
        self._token = token
        self._view: ViewUpdate | None = None  # the last /v1/view answer synced (with every seed producer)
        self._view_lock = threading.Lock()
        self._registry = ConsumerRegistry()
        self._register_lock = threading.Lock()
        self._cursors: dict[int, int] = {}
        self._consumer_locks: dict[int, threading.Lock] = {}
        self._consumer_locks_guard = threading.Lock()
        self._stop = threading.Event()
        self.primary_reachable: bool | None = None  # None until the first sync attempt
        self.last_synced_at: float | None = None  # time.time() of the primary's last answer (metrics)

    # --- lifecycle ---------------------------------------------------------------------------------
    def load(self) -> None:
        for ev in self._store.load(STREAM):
            self._registry.apply(ev)
        saved = self._store.load_view(VIEW_NAME)
        try:
            self._view = None if saved is None else ViewUpdate.from_json(saved, "saved view")
        except ViewError as e:  # not ours to repair: serve nothing until the primary answers
            log.warning("ignoring the saved view: %s", e)
        log.info(
            "loaded %d consumers; saved view %s",
            len(self._registry.consumers),
            "found" if self._view else "absent",
        )

    def ready(self) -> tuple[bool, str]:
        if self._view is None:
            return False, "no cluster view from the primary yet"
        return (True, "ready") if self._store.ready() else (False, "metadata store unavailable")

    def start_background(self) -> None:
        threading.Thread(target=self._sync_loop, name="view-sync", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    # --- view sync ---------------------------------------------------------------------------------
    def _sync_loop(self) -> None:
        # The project's envelope client, not a requests.Session: a connection that failed is closed
        # and never reused, so a dead or half-open connection to a replaced primary cannot stall us.
        with EnvelopeClient(token=self._token, max_idle_per_host=1) as primary:
            self._sync_with(primary)

    def _sync_with(self, primary: EnvelopeClient) -> None:
        backoff = 0.1
        full = True  # ask for every seed producer (else only those after the ones we have)
        while not self._stop.is_set():
            current = self._view
            try:
                message = primary.message(
                    "GET",
                    f"{self._primary_url}/v1/view",
                    params={
                        "since": current.view.version if current else -1,
                        "epoch": (current.view.epoch or "") if current else "",
                        "wait": int(defaults.VIEW_LONG_POLL_S),
                        "producers": len(current.producers) if current and not full else 0,
                    },
                    timeout=defaults.VIEW_LONG_POLL_S + 10,
                    connect_timeout=defaults.VIEW_CONNECT_TIMEOUT_S,
                )
                # Checked here (ViewError is a ValueError): an uncaught error would end the sync for good.
                update = ViewUpdate.from_json(message)
            except (CallFailed, ValueError) as e:
                if self.primary_reachable is not False:
                    log.warning("primary unreachable (%s: %s); serving the last view", type(e).__name__, e)
                self.primary_reachable = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            if not self.primary_reachable:
                log.info("synced with the primary at %s", self._primary_url)
            self.primary_reachable = True
            self.last_synced_at = time.time()
            update, full = _with_producers(update, current)
            if full:
                continue  # our producer list does not continue the primary's: ask for all of it
            if update.recovering:
                if not self._offer_view(primary, current, update.view.epoch):
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
                continue
            synced = update.view
            if current is None or (synced.epoch, synced.version) != (
                current.view.epoch,
                current.view.version,
            ):
                self._set_view(update)

    def _offer_view(self, primary: EnvelopeClient, current: ViewUpdate | None, epoch: str | None) -> bool:
        """Give a recovering primary our last view (none if we have none, or only its own epoch's)."""
        offer = current.to_json() if current is not None and current.view.epoch != epoch else None
        try:
            primary.call(
                "POST",
                f"{self._primary_url}/v1/view",
                json_body={"view": offer},
                timeout=defaults.VIEW_LONG_POLL_S,
                connect_timeout=defaults.VIEW_CONNECT_TIMEOUT_S,
            )
        except CallFailed as e:
            log.warning("offering the last view to the recovering primary failed: %s", e)
            return False
        log.info("offered the recovering primary %s", "our last view" if offer else "no view (we have none)")
        return True

    def _set_view(self, update: ViewUpdate) -> None:
        with self._view_lock:
            self._view = update
        try:
            self._store.save_view(VIEW_NAME, update.to_json())
        except Exception:  # noqa: BLE001 - the in-memory view still serves; the next sync saves again
            log.warning("could not save the synced view", exc_info=True)

    def cluster_view(self) -> ClusterView:
        """The synced view as the replica serves it: without the primary's epoch."""
        return dataclasses.replace(self._current_view(), epoch=None)

    def view(self, only: Collection[str] | None = None) -> dict:
        """``GET /v1/metadata``'s answer (the wire JSON of ``cluster_view``), all topics or ``only``."""
        current = self.cluster_view()
        return (current if only is None else current.only(only)).to_json()

    def _current_view(self) -> ClusterView:
        update = self._view
        if update is None:
            raise Refusal(Reason.UNAVAILABLE, "no cluster view from the primary yet; retry")
        return update.view

    def seed_topics(self) -> dict:
        view = self._current_view()
        return {t: {p.partition: p.broker for p in parts} for t, parts in view.topics.items()}

    def broker_names(self) -> list[str]:
        return list(self._current_view().brokers)

    @staticmethod
    def _address(view: ClusterView, topic: str, partition: str) -> str | None:
        broker = view.broker_for(topic, partition)
        return broker.address if broker else None

    # --- consumers ----------------------------------------------------------------------------------------
    def register_consumer(self, topic: object, partition: object | None) -> int:
        topic = validate_topic(topic)
        partition = None if partition is None else validate_partition(partition)
        view = self._current_view()
        topics = {t: view.partitions(t) for t in view.topics}
        if partition is None:
            require_topic(topics, topic)
        else:
            require_partition(topics, topic, partition)
        with self._register_lock:
            self._registry.check_new()
            consumer_id = len(self._registry.consumers)
            group = seed_group(consumer_id)
            # Positions first: a registration that fails half-way leaves only unused positions
            # for an id that the next registration overwrites, never a half-registered consumer.
            for part in [partition] if partition else view.partitions(topic):
                address = self._address(view, topic, part)
                if address is None:
                    raise Refusal(
                        Reason.NO_BROKER, f"partition {topic}:{part} has no broker right now; retry"
                    )
                try:
                    self._brokers.set_position_latest(address, topic, part, group)
                except BrokerLostPartition as e:
                    raise Refusal(Reason.UNAVAILABLE, f"partition {topic}:{part} is moving; retry") from e
            ev = event(EventType.CONSUMER_REGISTERED, topic=topic, partition=partition)
            self._store.write_events(STREAM, consumer_id, [ev])
            self._registry.apply(ev)
        return consumer_id

    def _consumer_lock(self, consumer_id: int) -> threading.Lock:
        with self._consumer_locks_guard:
            lock = self._consumer_locks.get(consumer_id)
            if lock is None:
                lock = self._consumer_locks[consumer_id] = threading.Lock()
            return lock

    def _consumer_partitions(self, consumer_id: int) -> tuple[str, list[str], ClusterView]:
        topic, partition = self._registry.consumer(consumer_id)
        view = self._current_view()
        if topic not in view.topics:  # topics are never deleted: the configuration was lost
            raise Refusal(
                Reason.TOPIC_NOT_FOUND,
                f"topic {topic} of consumer {consumer_id} is not in the cluster's configuration",
            )
        return topic, [partition] if partition else view.partitions(topic), view

    def consume(self, consumer_id: int) -> tuple[str, str, int]:
        """The next message for a consumer, round-robin over its partitions: (value, "T:P", offset)."""
        topic, partitions, view = self._consumer_partitions(consumer_id)
        group = seed_group(consumer_id)
        with self._consumer_lock(consumer_id):
            start = self._cursors.get(consumer_id, 0)
            failures = []
            for step in range(len(partitions)):
                index = (start + step) % len(partitions)
                partition = partitions[index]
                address = self._address(view, topic, partition)
                if address is None:
                    failures.append(partition)
                    continue
                try:
                    record = self._brokers.take_one(address, topic, partition, group)
                except (Refusal, BrokerLostPartition) as e:
                    log.warning("consume %s:%s for consumer %d: %s", topic, partition, consumer_id, e)
                    failures.append(partition)
                    continue
                if record is not None:
                    self._cursors[consumer_id] = index + 1
                    offset, value = record
                    return value, f"{topic}:{partition}", offset
        if partitions and len(failures) == len(partitions):
            raise Refusal(
                Reason.UNAVAILABLE, f"no broker of consumer {consumer_id}'s partitions answered; retry"
            )
        raise Refusal(Reason.NO_MESSAGE, f"no new message for consumer {consumer_id}")

    def size(self, consumer_id: int) -> int:
        """Messages pending for a consumer over all its partitions."""
        topic, partitions, view = self._consumer_partitions(consumer_id)
        group = seed_group(consumer_id)
        pending = 0
        for partition in partitions:
            address = self._address(view, topic, partition)
            if address is None:
                raise Refusal(
                    Reason.NO_BROKER, f"partition {topic}:{partition} has no broker right now; retry"
                )
            try:
                position, end = self._brokers.get_position(address, topic, partition, group)
            except BrokerLostPartition as e:
                raise Refusal(Reason.UNAVAILABLE, f"partition {topic}:{partition} is moving; retry") from e
            pending += max(0, end - (position or 0))
        return pending


def _with_producers(update: ViewUpdate, current: ViewUpdate | None) -> tuple[ViewUpdate, bool]:
    """The update with its complete seed producer list (an answer may carry only the new ones), and
    whether that failed because the answer does not continue ``current``'s list."""
    start = update.producers_from
    if not start:
        return update, False
    if current is None or update.view.epoch != current.view.epoch or start != len(current.producers):
        return update, True
    return dataclasses.replace(
        update, producers=current.producers + update.producers, producers_from=0
    ), False
