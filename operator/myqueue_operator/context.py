"""What every reconciler needs, bundled: config, the two clients, an event sink, a clock, locks.

Reconcilers (``brokers.py``, ``topics.py``) take a ``Context`` instead of importing globals, so
the kopf wiring (``handlers.py``) decides what the sink and clock are, and a test can pass fakes.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from .config import OperatorConfig
from .kube import Kube
from .primary import PrimaryClient
from .render import conditions as render_conditions


class EventSink(Protocol):
    def __call__(self, obj: Mapping, type_: str, reason: str, message: str) -> None: ...


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyedLocks:
    """One lock per object: a Broker's create handler, its Pod's event and its timer never
    reconcile it at the same time (kopf serialises handlers per object, not across objects)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, threading.Lock] = {}

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def forget(self, key: Hashable) -> None:
        with self._guard:
            self._locks.pop(key, None)


@dataclass
class Context:
    config: OperatorConfig
    kube: Kube
    primary: PrimaryClient
    events: EventSink
    now: Callable[[], str] = utc_now
    locks: KeyedLocks = field(default_factory=KeyedLocks)


class InvalidSpec(Exception):
    """The resource cannot be reconciled as written (kopf.PermanentError)."""


class RetryLater(Exception):
    """A transient condition a retry can fix (kopf.TemporaryError with ``delay``)."""

    def __init__(self, message: str, delay: float):
        super().__init__(message)
        self.delay = delay


def write_status(ctx: Context, plural: str, obj: dict, status: dict) -> None:
    """Patch a resource's status if it changed, post an Event when its Ready condition's status or
    reason changed, and keep ``obj["status"]`` as the server now has it (a None field is deleted)."""
    old = obj.get("status") or {}
    if render_conditions.status_differs(old, status):
        meta = obj["metadata"]
        ctx.kube.patch_status(plural, meta["namespace"], meta["name"], status)
    before, after = render_conditions.condition_of(old), render_conditions.condition_of(status)
    if after and render_conditions.worth_an_event(before, after):
        ctx.events(obj, render_conditions.event_type(after["reason"]), after["reason"], after["message"])
    obj["status"] = {k: v for k, v in {**old, **status}.items() if v is not None}
