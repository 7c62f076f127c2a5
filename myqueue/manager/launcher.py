"""How the primary gets broker processes started and stopped, without knowing who runs them.

``LocalLauncher`` asks the local supervisor (``myqueue cluster up``) over its loopback control
API; ``KubernetesLauncher`` creates and deletes ``Broker`` resources that the operator runs. With
``NoLauncher`` brokers are started by someone else and register themselves (``POST /v1/brokers``).
"""

import os
import time
from abc import ABC, abstractmethod
from pathlib import Path

from myqueue.core import defaults
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.net.envelope import CallFailed, EnvelopeClient


class Launcher(ABC):
    """Starts and stops broker processes."""

    can_start = True

    @abstractmethod
    def start(self, name: str) -> str:
        """Start broker ``name`` (idempotent) and return its address (http://host:port)."""

    @abstractmethod
    def stop(self, name: str) -> None:
        """Stop broker ``name`` (idempotent)."""

    def started(self, names: list[str]) -> set[str]:
        """Which of ``names`` this launcher runs (and so must stop); the others registered themselves.

        Asked before a removal acts, so that a launcher that cannot answer refuses the whole change.
        """
        return set(names)


class NoLauncher(Launcher):
    """Brokers are managed elsewhere; /brokers/add is refused with a pointer to the right tool."""

    can_start = False

    def start(self, name: str) -> str:
        raise Refusal(
            Reason.INVALID_REQUEST,
            "this manager starts no brokers (no launcher configured): start the broker yourself and "
            "register it with POST /v1/brokers",
        )

    def stop(self, name: str) -> None:
        return None

    def started(self, names: list[str]) -> set[str]:
        return set()


class LocalLauncher(Launcher):
    """The local supervisor's control API (loopback, bearer token)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0):
        self._url = url.rstrip("/")
        self._client = EnvelopeClient(
            token=token or os.environ.get("MYQUEUE_LAUNCHER_TOKEN"), max_idle_per_host=2
        )
        self._timeout = timeout

    def _call(self, method: str, path: str, json_body: object = None):
        try:
            return self._client.message(method, self._url + path, json_body=json_body, timeout=self._timeout)
        except CallFailed as e:  # every failure: the primary cannot start or stop a broker now
            if e.envelope:
                raise Refusal(Reason.UNAVAILABLE, f"the local supervisor refused: {e.message}") from e
            what = e.reach if not e.answered else f"HTTP {e.status} without an envelope"
            raise Refusal(Reason.UNAVAILABLE, f"the local supervisor did not answer ({what})") from e

    def start(self, name: str) -> str:
        return self._call("POST", "/brokers", json_body={"name": name})["address"]

    def stop(self, name: str) -> None:
        self._call("DELETE", f"/brokers/{name}")

    def started(self, names: list[str]) -> set[str]:
        running = self._call("GET", "/processes")
        return {name for name in names if (running.get(name) or {}).get("role") == "broker"}


class KubernetesLauncher(Launcher):
    """``Broker`` resources (myqueue.io/v1alpha1) in one namespace, run by the operator.

    ``start`` creates the Broker (an existing one is kept) and waits until the operator publishes
    ``status.address`` — it does so once the broker's Pod is ready, before it registers the broker
    with the primary, because the primary calls ``start`` holding its write lock. ``stop`` deletes
    the Broker and does not wait: the operator's finalizer lets it go once the primary has moved its
    partitions, which the primary does right after ``stop`` returns. Least privilege (see
    operator/RBAC.md): create, get, list, delete on brokers in this namespace, nothing else.
    """

    GROUP, VERSION, PLURAL = "myqueue.io", "v1alpha1", "brokers"
    FAILED_REASONS = frozenset({"InvalidSpec", "PodFailed", "RegistrationRefused"})
    SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

    def __init__(
        self,
        namespace: str | None = None,
        broker_store: str = "memory",
        timeout: float = defaults.KUBERNETES_BROKER_START_TIMEOUT_S,
        api=None,
    ):
        self.namespace = namespace or self._pod_namespace()
        if not self.namespace:
            raise ValueError("--launcher kubernetes needs --launcher-namespace (or MYQUEUE_NAMESPACE)")
        self.broker_store = broker_store
        self._timeout = timeout
        self._api = api  # a kubernetes.client.CustomObjectsApi; created on first use

    @classmethod
    def _pod_namespace(cls) -> str | None:
        try:
            return cls.SA_NAMESPACE_FILE.read_text().strip() or None
        except OSError:
            return None

    def _client(self):
        if self._api is None:
            from kubernetes import client, config  # the kubernetes extra: only this launcher needs it

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self._api = client.CustomObjectsApi()
        return self._api

    def _call(self, what: str, fn, *args, missing_ok: bool = False, exists_ok: bool = False):
        from kubernetes.client import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(self.GROUP, self.VERSION, self.namespace, self.PLURAL, *args)
        except ApiException as e:
            if (missing_ok and e.status == 404) or (exists_ok and e.status == 409):
                return None
            raise Refusal(Reason.UNAVAILABLE, f"Kubernetes refused to {what}: {e.status} {e.reason}") from e
        except (HTTPError, OSError) as e:  # the API server did not answer
            raise Refusal(Reason.UNAVAILABLE, f"Kubernetes did not answer ({type(e).__name__})") from e

    def start(self, name: str) -> str:
        api = self._client()
        body = {
            "apiVersion": f"{self.GROUP}/{self.VERSION}",
            "kind": "Broker",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/created-by": "myqueue-manager"}},
            "spec": {"store": self.broker_store},
        }
        created = self._call(
            f"create Broker {name}", api.create_namespaced_custom_object, body, exists_ok=True
        )
        deadline = time.monotonic() + self._timeout
        while True:
            broker = self._call(
                f"read Broker {name}", api.get_namespaced_custom_object, name, missing_ok=True
            )
            status = (broker or {}).get("status") or {}
            ready: dict = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            if broker is not None and status.get("address"):
                return status["address"]
            if ready.get("reason") in self.FAILED_REASONS or time.monotonic() > deadline:
                why = (
                    ready.get("message")
                    or f"no address within {self._timeout:.0f} s (is the operator running?)"
                )
                if created is not None:
                    self.stop(name)
                raise Refusal(Reason.UNAVAILABLE, f"Broker {name} did not start: {why}")
            time.sleep(0.2)  # polling the resource's status with a deadline

    def stop(self, name: str) -> None:
        self._call(
            f"delete Broker {name}", self._client().delete_namespaced_custom_object, name, missing_ok=True
        )


def make_launcher(
    kind: str, url: str | None, namespace: str | None = None, broker_store: str = "memory"
) -> Launcher:
    if kind == "none":
        return NoLauncher()
    if kind == "local":
        if not url:
            raise ValueError("--launcher local needs --launcher-url")
        return LocalLauncher(url)
    if kind == "kubernetes":
        return KubernetesLauncher(namespace, broker_store)
    raise ValueError(f"unknown launcher {kind!r}")
