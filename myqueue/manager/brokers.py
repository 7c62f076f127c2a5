"""The managers' calls to brokers, with every failure turned into a Refusal.

Connections are reused through one requests.Session per thread (a Session is not documented as
thread-safe). A broker that does not answer becomes Refusal(UNAVAILABLE); a broker that does not
host the partition asked for becomes BrokerLostPartition so the caller can re-host and retry.
"""

import threading
from typing import Any

import requests

from myqueue.core import defaults, framing
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.service.auth import auth_headers


class BrokerLostPartition(Exception):
    """The broker answered NOT_HERE (e.g. it restarted in memory mode before being told again)."""


class BrokerClient:
    """HTTP calls from a manager to brokers."""

    def __init__(self, timeout: float = defaults.BROKER_CALL_TIMEOUT_S, token: str | None = None):
        self._timeout = timeout
        self._headers = auth_headers(token)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers.update(self._headers)
        return session

    def _call(self, method: str, address: str, path: str, *, timeout: float | None = None, **kwargs) -> Any:
        url = f"{address}{path}"
        try:
            response = self._session().request(method, url, timeout=timeout or self._timeout, **kwargs)
        except requests.RequestException as e:
            raise Refusal(Reason.UNAVAILABLE, f"broker at {address} is unavailable ({type(e).__name__})") from e
        try:
            body = response.json()
        except ValueError as e:
            raise Refusal(Reason.UNAVAILABLE, f"broker at {address} answered {response.status_code} without JSON") from e
        if response.ok and body.get("status") == "success":
            return body.get("message")
        reason = body.get("reason")
        if reason == Reason.NOT_HERE.value:
            raise BrokerLostPartition(body.get("message", "not here"))
        try:
            parsed = Reason(reason)
        except ValueError:
            parsed = Reason.UNAVAILABLE
        if parsed is Reason.INTERNAL:
            parsed = Reason.UNAVAILABLE
        raise Refusal(parsed, f"broker at {address}: {body.get('message', response.reason)}")

    # --- partitions -------------------------------------------------------------------------
    def list_partitions(self, address: str, timeout: float = 2.0) -> dict:
        return self._call("GET", address, "/v1/partitions", timeout=timeout)

    def host(self, address: str, topic: str, partition: str) -> dict:
        return self._call("PUT", address, f"/v1/partitions/{topic}/{partition}")

    def unhost(self, address: str, topic: str, partition: str) -> None:
        self._call("DELETE", address, f"/v1/partitions/{topic}/{partition}")

    def append_one(self, address: str, topic: str, partition: str, value: bytes) -> int:
        body = framing.encode_batch([value])
        result = self._call(
            "POST",
            address,
            f"/v1/partitions/{topic}/{partition}/records",
            data=body,
            headers={"Content-Type": framing.BATCH_CONTENT_TYPE},
        )
        return int(result["base_offset"])

    # --- positions -------------------------------------------------------------------------------
    def _position_path(self, topic: str, partition: str, group: str) -> str:
        return f"/v1/partitions/{topic}/{partition}/positions/{group}"

    def set_position_latest(self, address: str, topic: str, partition: str, group: str) -> int:
        result = self._call("PUT", address, self._position_path(topic, partition, group), json={"at": "latest"})
        return int(result["offset"])

    def get_position(self, address: str, topic: str, partition: str, group: str) -> tuple[int | None, int]:
        result = self._call("GET", address, self._position_path(topic, partition, group))
        return result["offset"], int(result["end_offset"])

    def take_one(self, address: str, topic: str, partition: str, group: str) -> tuple[int, str] | None:
        result = self._call(
            "POST", address, self._position_path(topic, partition, group) + "/take", json={"max_records": 1}
        )
        records = result["records"]
        return (records[0]["offset"], records[0]["value"]) if records else None

    # --- health ------------------------------------------------------------------------------------
    def ready(self, address: str, timeout: float = 2.0) -> bool:
        try:
            response = self._session().get(f"{address}/readyz", timeout=timeout)
        except requests.RequestException:
            return False
        return response.status_code == 200

    def selftest(self, address: str) -> dict:
        return self._call("POST", address, "/v1/selftest", timeout=30)
