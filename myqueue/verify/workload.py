"""The bounded workload of a verify run: produce unique values, consume them, record everything.

Against any cluster reachable at ``--broker`` it creates its own topics (``V<run id>_<n>``, never
reused), registers every consumer *first* — fast-path ``Consumer(start="latest")`` groups and/or
seed-path consumers through the replica — then starts the producers (fast-path ``Producer``), which
send the values ``p<producer>-<seq>`` (padded with ``.`` to ``message_size``) round-robin over the
partitions. A send that fails is sent again (the same value, to the same partition) up to
``send_attempts`` times: the broker sees a new record, so when the failed attempt had in fact been
stored the value is stored twice, which the check reports as a duplicate write. Every
acknowledgement and every delivery is recorded; producing stops when ``messages`` were sent or
after ``duration`` seconds, then consumers drain until each received every acknowledged record it
should, or went quiet, or ``drain_timeout`` passed; the partitions still missing records are then
read back from the log start (within ``readback_timeout``), so that the check can tell a record not
delivered in time from one not stored. The result is a ``history.History``; judging
it is ``history.check``'s business, the consumers' loops ``consumers.py``'s, hurting the cluster
meanwhile the caller's (``during``, see ``runner.py``). Every loop is bounded in time.
"""

import functools
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

from myqueue.client import ApiHandler, Consumer, Producer
from myqueue.client.address import manager_urls
from myqueue.client.errors import AlreadyExists, BrokerUnavailable, GroupNotFound, MyQueueError
from myqueue.client.transport import Backoff, Transport
from myqueue.core import defaults
from myqueue.core.view import ClusterView, ViewError

from .consumers import ConsumerLog, Position, open_member, open_seed, read_back, run_fast, run_seed
from .history import Ack, History, TopicPartition
from .progress import Progress
from .values import PAD, make_value, record_headers, record_key, value_id

log = logging.getLogger(__name__)

Report = Callable[[str], None]

SETUP_TIMEOUT_S = 60.0  # topics created and visible on both managers with ready brokers
SEND_WINDOW = 256  # sends one producer keeps in flight
POLL_S = 0.2  # one producer wait for an outcome, one drain check
QUIET_MIN_S = 5.0  # a drain ends early when nothing arrived for max(this, client timeout)
CLOSE_TIMEOUT_S = 30.0  # closing a producer or consumer
FAULTS_JOIN_TIMEOUT_S = 3600.0  # a fault driver bounds each fault itself; this bounds the whole
PROGRESS_EVERY_S = (
    defaults.CLI_PROGRESS_EVERY_S
)  # a "progress:" line this often in the produce and drain phases


@dataclass(frozen=True)
class WorkloadConfig:
    """What to run; the defaults are ``myqueue verify``'s."""

    broker: str = f"{defaults.DEFAULT_HOST}:{defaults.PRIMARY_PORT}"  # the primary manager
    replica_port: int | None = None
    messages: int = 1000
    producers: int = 2
    consumers: int = 2
    topics: int = 1
    partitions: int = 3
    message_size: int = 64
    duration: float = 60.0  # seconds of producing at most
    drain_timeout: float = 120.0  # an upper bound: a drain ends as soon as consumers caught up or went quiet
    readback_timeout: float = 60.0  # reading back, from the log start, the partitions a drain left short
    fast_path: bool = True  # fast-path consumers (Consumer groups straight to the brokers)
    seed_path: bool = False  # seed-path consumers (the replica's /consumer/consume); both: alternate
    client_timeout: float = defaults.CLIENT_TIMEOUT_S
    send_attempts: int = 10  # first send plus retries of a send that failed
    group_consumers: int = 0  # members of one consumer group sharing the topics (0: none)
    keep_topics: bool = False  # leave the run's topics behind (default: deleted once the run is checked)
    listener: str | None = None  # fast-path clients reach brokers under this listener ("external")

    def __post_init__(self) -> None:
        _bounded("messages", self.messages, 1, 10_000_000)
        _bounded("producers", self.producers, 1, 64)
        _bounded("consumers", self.consumers, 1, 64)
        _bounded("group_consumers", self.group_consumers, 0, 64)
        _bounded("topics", self.topics, 1, 100)
        _bounded("partitions", self.partitions, 1, defaults.MAX_PARTITIONS_PER_TOPIC)
        _bounded("message size", self.message_size, 1, defaults.MAX_MESSAGE_BYTES)
        _bounded("duration", self.duration, 0.1, 86_400.0)
        _bounded("drain timeout", self.drain_timeout, 0.1, 3_600.0)
        _bounded("read-back timeout", self.readback_timeout, 0.1, 3_600.0)
        _bounded("client timeout", self.client_timeout, 0.1, 600.0)
        _bounded("send attempts", self.send_attempts, 1, 1000)
        if not (self.fast_path or self.seed_path):
            raise ValueError("choose fast-path and/or seed-path consumers")
        manager_urls(self.broker, None, self.replica_port)  # ValueError for a bad address


def _bounded(what: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high}, not {value}")


@dataclass
class _Send:
    producer: int
    value: str
    topic: str
    partition: str
    attempt: int
    future: "Future[Any] | None" = None
    retry_at: float = 0.0


class Workload:
    """One run of the workload; ``run()`` returns its history. Not reusable."""

    def __init__(
        self, config: WorkloadConfig, report: Report | None = None, progress: Progress | None = None
    ):
        self.config = config
        self.report = report or (lambda line: None)
        self.progress = progress or Progress()
        self.run_id = secrets.token_hex(4)
        self.topics = [f"V{self.run_id}_{i}" for i in range(config.topics)]
        self.partitions: list[TopicPartition] = [
            (topic, f"P{j}") for topic in self.topics for j in range(config.partitions)
        ]
        self._managers = manager_urls(config.broker, None, config.replica_port)
        self._stop_consumers = threading.Event()
        self._lock = threading.Lock()  # guards the shared lists below
        self._acks: list[Ack] = []
        self._attempted: set[str] = set()
        self._send_errors: Counter = Counter()
        self._resent = 0
        self._abandoned = 0
        self._logs: list[ConsumerLog] = []
        self.group = f"verify.{self.run_id}.group"
        self._member_stops: dict[str, threading.Event] = {}  # a group member's own stop (kill-member)
        self._members: dict[str, Consumer] = {}
        self._member_threads: dict[str, threading.Thread] = {}

    # --- the run ---------------------------------------------------------------------------
    def run(self, during: Callable[["Workload"], None] | None = None) -> History:
        """Set up, produce (running ``during(self)`` in a thread meanwhile), drain; the history."""
        self._setup()
        clients = self._register_consumers()
        consumer_threads = [
            threading.Thread(
                target=self._consume, args=(client, log_), name=f"verify-{log_.name}", daemon=True
            )
            for client, log_ in clients
        ]
        for thread, (_, log_) in zip(consumer_threads, clients, strict=True):
            if log_.name in self._member_stops:
                self._member_threads[log_.name] = thread
        short: set[TopicPartition] = set()
        try:
            for thread in consumer_threads:
                thread.start()
            self._produce_phase(during)
            short = self._drain_phase()
        finally:
            self._stop_consumers.set()
            for stop in self._member_stops.values():
                stop.set()
            for thread in consumer_threads:
                thread.join(CLOSE_TIMEOUT_S + self.config.client_timeout)
            for client, _ in clients:
                if isinstance(client, Consumer):
                    _quietly(client.close)
        return History(
            acks=list(self._acks),
            deliveries=[d for log_ in self._logs for d in log_.deliveries],
            subscriptions={
                log_.owner: dict(log_.subscription) for log_ in self._logs if log_.owner == log_.name
            }
            | self._group_subscription(),
            attempted=set(self._attempted),
            stored=self._read_back(short),
            sessions={session: log_.owner for log_ in self._logs for session in log_.sessions},
        )

    def _group_subscription(self) -> dict[str, dict[TopicPartition, int]]:
        """The group's subscription: where its first member started on every partition."""
        first = next((log_ for log_ in self._logs if log_.owner == self.group), None)
        return {} if first is None else {self.group: dict(first.subscription)}

    def kill_member(self) -> str | None:
        """kill-member: one live group member stops as a crash would (no commit, no leave); returns
        its member id (None when no member is left to kill)."""
        live = [name for name, stop in self._member_stops.items() if not stop.is_set()]
        if len(live) < 2:
            return None
        name = live[-1]
        self._member_stops[name].set()
        thread = self._member_threads.get(name)
        if thread is not None:
            thread.join(CLOSE_TIMEOUT_S + self.config.client_timeout)
        member = self._members[name]
        member_id = member.member_id
        _quietly(functools.partial(member.close, commit=False, leave_group=False))
        return member_id

    def delete_topics(self) -> None:
        """Delete this run's topics (``--keep-topics`` skips it); a failure is reported, not raised:
        the verdict is about the run, and an unreachable cluster must not hide it."""
        api = ApiHandler(
            self.config.broker, readonly=self.config.replica_port, timeout=self.config.client_timeout
        )
        try:
            for topic in self.topics:
                try:
                    api.delete_topic(topic)
                except MyQueueError as e:
                    self.report(f"cleanup: could not delete topic {topic}: {e}")
                    continue
            self.report(f"cleanup: deleted topic(s) {', '.join(self.topics)} (--keep-topics keeps them)")
        finally:
            api.close()
        self._delete_groups()

    def _delete_groups(self) -> None:
        """Forget the run's consumer groups on the coordinator (their members have left)."""
        groups = [f"verify.{self.run_id}.c{i}" for i in range(self.config.consumers)]
        groups += [self.group] if self.config.group_consumers else []
        transport = Transport(timeout=self.config.client_timeout)
        try:
            for group in groups:
                try:
                    transport.json("DELETE", f"{self._managers.primary}/v1/groups/{group}")
                except GroupNotFound:
                    pass  # a seed-path consumer, or never joined
                except MyQueueError as e:
                    self.report(f"cleanup: could not delete consumer group {group}: {e}")
        finally:
            transport.close()

    # --- setup -----------------------------------------------------------------------------
    def _setup(self) -> None:
        started = time.monotonic()
        deadline = started + SETUP_TIMEOUT_S
        api = ApiHandler(
            self.config.broker, readonly=self.config.replica_port, timeout=self.config.client_timeout
        )
        try:
            for topic, partition in self.partitions:
                _until(
                    deadline,
                    functools.partial(_add_partition, api, topic, partition),
                    f"create {topic}:{partition}",
                )
        finally:
            api.close()
        transport = Transport(timeout=self.config.client_timeout)
        try:
            for manager in (self._managers.primary, self._managers.replica):
                _until(
                    deadline,
                    functools.partial(self._visible, transport, manager),
                    f"the topics ready on {manager}",
                )
        finally:
            transport.close()
        kinds = " and ".join(
            k for k, on in (("fast-path", self.config.fast_path), ("seed-path", self.config.seed_path)) if on
        )
        members = (
            f"{self.config.group_consumers} member(s) of consumer group {self.group}, "
            if self.config.group_consumers
            else ""
        )
        self.report(
            f"setup: {len(self.topics)} topic(s) {', '.join(self.topics)} x {self.config.partitions} partitions on "
            f"{self._managers.primary} in {time.monotonic() - started:.1f} s; {self.config.consumers} {kinds} "
            f"consumer(s), {members}{self.config.producers} producer(s), {self.config.messages} messages of "
            f"{self.config.message_size} bytes"
        )

    def _visible(self, transport: Transport, manager: str) -> bool:
        """Every partition of ours is in the manager's metadata with a ready broker."""
        try:
            view = ClusterView.from_json(transport.json("GET", f"{manager}/v1/metadata")["message"])
        except (MyQueueError, ViewError):
            return False
        for topic, partition in self.partitions:
            broker = view.broker_for(topic, partition)
            if broker is None or not broker.ready:
                return False
        return True

    def _register_consumers(self) -> list[tuple[Any, ConsumerLog]]:
        """Every consumer, before any producer starts: fast-path, seed-path, or alternating."""
        config = self.config
        clients: list[tuple[Any, ConsumerLog]] = []
        client: tuple[Any, ConsumerLog]
        try:
            for i in range(config.consumers):
                if config.seed_path and (not config.fast_path or i % 2 == 1):
                    client = open_seed(
                        f"seed{i}",
                        self.partitions,
                        self._managers,
                        config.broker,
                        config.replica_port,
                        config.client_timeout,
                    )
                else:
                    client = open_member(  # a group of its own: it starts at ``latest`` everywhere
                        f"fast{i}",
                        self.topics,
                        f"verify.{self.run_id}.c{i}",
                        config.broker,
                        config.replica_port,
                        config.client_timeout,
                        owner=f"fast{i}",
                        listener=config.listener,
                    )
                clients.append(client)
                self._logs.append(client[1])
            for i in range(config.group_consumers):
                name = f"member{i}"
                client = open_member(
                    name,
                    self.topics,
                    self.group,
                    config.broker,
                    config.replica_port,
                    config.client_timeout,
                    owner=self.group,
                    listener=config.listener,
                )
                self._members[name] = client[0]
                self._member_stops[name] = threading.Event()
                clients.append(client)
                self._logs.append(client[1])
        except BaseException:
            for client, _ in clients:
                if isinstance(client, Consumer):
                    _quietly(client.close)
            raise
        return clients

    # --- producing ---------------------------------------------------------------------------
    def _produce_phase(self, during: Callable[["Workload"], None] | None) -> None:
        config = self.config
        started = time.monotonic()
        deadline = started + config.duration
        quota = [
            config.messages // config.producers + (k < config.messages % config.producers)
            for k in range(config.producers)
        ]
        producers = [
            threading.Thread(
                target=self._produce, args=(k, quota[k], deadline), name=f"verify-p{k}", daemon=True
            )
            for k in range(config.producers)
        ]
        driver = (
            threading.Thread(target=during, args=(self,), name="verify-faults", daemon=True)
            if during
            else None
        )
        for thread in producers:
            thread.start()
        if driver is not None:
            driver.start()
        bound = config.duration + self._settle_s() + CLOSE_TIMEOUT_S
        for thread in producers:
            while thread.is_alive() and (left := started + bound - time.monotonic()) > 0:
                thread.join(min(PROGRESS_EVERY_S, left))
                if thread.is_alive():
                    self.report(
                        f"progress: produce {self.progress.dispatched} sent, {len(self._acks)} acknowledged "
                        f"after {time.monotonic() - started:.0f} s"
                    )
        self.progress.finish()
        if driver is not None:
            driver.join(FAULTS_JOIN_TIMEOUT_S)  # each fault has its own trigger and recovery deadlines
        stuck = [t.name for t in producers if t.is_alive()]
        if stuck:
            log.error("producer threads still running after %.0f s: %s", bound, stuck)
        errors = ", ".join(f"{name}: {n}" for name, n in self._send_errors.most_common()) or "none"
        self.report(
            f"produce: {self.progress.dispatched} sent, {len(self._acks)} acknowledged, {self._resent} resent "
            f"after a failure, {self._abandoned} never acknowledged, in {time.monotonic() - started:.1f} s "
            f"(send failures: {errors})"
        )

    def _settle_s(self) -> float:
        """How long in-flight sends may take to settle after the produce deadline."""
        return 2 * self.config.client_timeout + 5.0

    def _produce(self, k: int, quota: int, deadline: float) -> None:
        config = self.config
        hard_stop = deadline + self._settle_s()
        backoff = Backoff()
        pending: list[_Send] = []
        seq = 0
        producer = Producer(
            config.broker,
            replica_port=config.replica_port,
            timeout=config.client_timeout,
            listener=config.listener,
        )
        try:
            while time.monotonic() < hard_stop:
                now = time.monotonic()
                for send in [s for s in pending if s.future is not None and s.future.done()]:
                    self._settle(send, pending, backoff, hard_stop)
                for send in [s for s in pending if s.future is None and s.retry_at <= now]:
                    self._start(producer, send)
                gated = False
                if seq < quota and len(pending) < SEND_WINDOW and now < deadline:
                    if self.progress.try_admit():
                        topic, partition = self.partitions[(seq + k) % len(self.partitions)]
                        send = _Send(k, make_value(k, seq, config.message_size), topic, partition, attempt=1)
                        with self._lock:
                            self._attempted.add(value_id(send.value, config.message_size))
                        pending.append(send)
                        self._start(producer, send)
                        seq += 1
                        continue
                    gated = True  # held at a fault's gate: keep settling what is in flight
                if not pending and (seq >= quota or now >= deadline):
                    break
                in_flight = [s.future for s in pending if s.future is not None]
                if in_flight:
                    wait(in_flight, timeout=POLL_S, return_when=FIRST_COMPLETED)
                elif gated:
                    self.progress.wait_gate(POLL_S)
                else:
                    time.sleep(min(POLL_S, max(0.0, min(s.retry_at for s in pending) - now)))
        finally:
            with self._lock:
                self._abandoned += len(pending)
            producer.close(CLOSE_TIMEOUT_S)

    def _start(self, producer: Producer, send: _Send) -> None:
        try:
            ident = value_id(send.value, len(send.value))
            send.future = producer.send(
                send.topic,
                send.value,
                key=record_key(ident),
                headers=record_headers(ident),
                partition=send.partition,
            )
        except MyQueueError as error:  # e.g. no manager answered the metadata refresh
            failed: Future[Any] = Future()
            failed.set_exception(error)
            send.future = failed

    def _settle(self, send: _Send, pending: list[_Send], backoff: Backoff, hard_stop: float) -> None:
        if send.future is None:
            raise RuntimeError("settling a send that was never submitted")
        error = send.future.exception()
        if error is None:
            metadata = send.future.result()
            ack = Ack(
                f"p{send.producer}",
                metadata.topic,
                metadata.partition,
                metadata.offset,
                value_id(send.value, self.config.message_size),
            )
            with self._lock:
                self._acks.append(ack)
            self.progress.count_ack()
            pending.remove(send)
            return
        with self._lock:
            self._send_errors[type(error).__name__] += 1
        log.warning(
            "send of %s to %s:%s failed (attempt %d): %s",
            send.value.split(PAD, 1)[0],
            send.topic,
            send.partition,
            send.attempt,
            error,
        )
        if send.attempt >= self.config.send_attempts or time.monotonic() >= hard_stop:
            pending.remove(send)
            with self._lock:
                self._abandoned += 1
            return
        send.attempt += 1
        send.future = None
        send.retry_at = time.monotonic() + backoff.delay(min(send.attempt, 6))
        with self._lock:
            self._resent += 1

    # --- consuming ---------------------------------------------------------------------------
    def _consume(self, client: Any, log_: ConsumerLog) -> None:
        config = self.config
        if isinstance(client, Consumer):
            stop = self._member_stops.get(log_.name, self._stop_consumers)
            run_fast(client, log_, config.message_size, stop)
        else:
            run_seed(
                client,
                log_,
                self._managers.replica,
                config.message_size,
                config.client_timeout,
                self._stop_consumers,
            )

    # --- draining ----------------------------------------------------------------------------
    def _drain_phase(self) -> set[TopicPartition]:
        """Wait for the consumers to catch up; the partitions where some still miss records."""
        started = time.monotonic()
        deadline = started + self.config.drain_timeout
        quiet_s = max(QUIET_MIN_S, self.config.client_timeout)
        first = {log_.owner: log_ for log_ in reversed(self._logs)}  # each owner's first log
        missing = {owner: self._expected(log_) for owner, log_ in first.items()}
        outcome = f"drain timeout ({self.config.drain_timeout:g} s) reached"
        next_progress = started + PROGRESS_EVERY_S
        while time.monotonic() < deadline:
            if time.monotonic() >= next_progress:
                next_progress += PROGRESS_EVERY_S
                self.report(
                    f"progress: drain {sum(len(m) for m in missing.values())} deliveries still missing "
                    f"after {time.monotonic() - started:.0f} s"
                )
            for log_ in self._logs:
                missing[log_.owner] -= log_.received
            if not any(missing.values()):
                outcome = "every consumer received every acknowledged record"
                break
            last = max([log_.last_delivery for log_ in self._logs] + [started])  # any member counts
            if time.monotonic() - last >= quiet_s:
                outcome = f"nothing arrived for {quiet_s:g} s"
                break
            time.sleep(POLL_S)
        errors: Counter = Counter()
        for log_ in self._logs:
            errors.update(log_.errors)
        self.report(
            f"drain: {outcome} after {time.monotonic() - started:.1f} s; "
            f"{sum(len(log_.deliveries) for log_ in self._logs)} deliveries to {len(self._logs)} consumer(s); "
            f"still missing {sum(len(m) for m in missing.values())}; consumer errors: "
            + (", ".join(f"{name}: {n}" for name, n in errors.most_common()) or "none")
        )
        return {(topic, partition) for m in missing.values() for topic, partition, _, _ in m}

    def _read_back(self, partitions: set[TopicPartition]) -> dict[TopicPartition, set[Position]]:
        """The records stored in ``partitions``, read from the log start (none to read: nothing)."""
        if not partitions:
            return {}
        config = self.config
        started = time.monotonic()
        stored, problems = read_back(
            sorted(partitions),
            config.broker,
            config.replica_port,
            config.message_size,
            config.client_timeout,
            started + config.readback_timeout,
            listener=config.listener,
        )
        self.report(
            f"read back: {len(stored)} of {len(partitions)} partition(s) short of records read from the log "
            f"start in {time.monotonic() - started:.1f} s, {sum(map(len, stored.values()))} records"
            + (f"; not read to the end: {'; '.join(problems)}" if problems else "")
        )
        return stored

    def _expected(self, log_: ConsumerLog) -> set[Position]:
        with self._lock:
            acks = list(self._acks)
        return {
            (a.topic, a.partition, a.offset, a.value)
            for a in acks
            if (a.topic, a.partition) in log_.subscription
            and a.offset >= log_.subscription[(a.topic, a.partition)]
        }


def _add_partition(api: ApiHandler, topic: str, partition: str) -> bool:
    """Create one partition; True once it exists (a retry after a lost answer finds it there)."""
    try:
        api.add_topic(topic, partition)
    except AlreadyExists:
        return True
    except MyQueueError as error:
        if not error.unavailable:
            raise
        log.warning("creating %s:%s: %s; retrying", topic, partition, error)
        return False
    return True


def _until(deadline: float, condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until true; BrokerUnavailable (the cluster cannot be reached) at ``deadline``."""
    while not condition():
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(f"verify setup: gave up waiting to {what}")
        time.sleep(POLL_S)


def _quietly(close: Callable[[], None]) -> None:
    try:
        close()
    except MyQueueError as error:
        log.warning("closing a client failed: %s", error)
