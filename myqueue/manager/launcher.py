"""How the primary gets broker processes started and stopped, without knowing who runs them.

``LocalLauncher`` asks the local supervisor (``myqueue cluster up``) over its loopback control
API; a Kubernetes launcher creates ``Broker`` resources for the operator. With ``NoLauncher``
brokers are started by someone else and register themselves (``POST /v1/brokers``).
"""

import os
from abc import ABC, abstractmethod

import requests

from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal


class Launcher(ABC):
    """Starts and stops broker processes."""

    can_start = True

    @abstractmethod
    def start(self, name: str) -> str:
        """Start broker ``name`` (idempotent) and return its address (http://host:port)."""

    @abstractmethod
    def stop(self, name: str) -> None:
        """Stop broker ``name`` (idempotent)."""


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


class LocalLauncher(Launcher):
    """The local supervisor's control API (loopback, bearer token)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0):
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token or os.environ.get('MYQUEUE_LAUNCHER_TOKEN', '')}"}
        self._timeout = timeout

    def _call(self, method: str, path: str, **kwargs):
        try:
            response = requests.request(
                method, self._url + path, headers=self._headers, timeout=self._timeout, **kwargs
            )
            body = response.json()
        except (requests.RequestException, ValueError) as e:
            raise Refusal(Reason.UNAVAILABLE, f"the local supervisor did not answer ({type(e).__name__})") from e
        if not response.ok or body.get("status") != "success":
            raise Refusal(Reason.UNAVAILABLE, f"the local supervisor refused: {body.get('message')}")
        return body["message"]

    def start(self, name: str) -> str:
        return self._call("POST", "/brokers", json={"name": name})["address"]

    def stop(self, name: str) -> None:
        self._call("DELETE", f"/brokers/{name}")


def make_launcher(kind: str, url: str | None) -> Launcher:
    if kind == "none":
        return NoLauncher()
    if kind == "local":
        if not url:
            raise ValueError("--launcher local needs --launcher-url")
        return LocalLauncher(url)
    raise ValueError(f"unknown launcher {kind!r}")
