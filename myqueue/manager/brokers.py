"""The managers' calls to brokers, with every failure turned into a Refusal.

Connections are kept alive and shared by all threads through one ``myqueue.net.pool.Pool``
(``http.client`` underneath: on loopback it costs a fraction of a ``requests.Session`` call, and
the seed's produce and consume each make one broker call per message). A broker that cannot be
reached or does not answer becomes Refusal(UNAVAILABLE); a broker that does not host the
partition asked for becomes BrokerLostPartition so the caller can re-host and retry.

No call is repeated here when its outcome is unknown (the request may have been received): an
append or a take repeated after a lost reply could store a message twice or skip one. Only
idempotent calls (GET, PUT) are resent once, and only when a kept-alive connection turned out to
be closed by the broker (a restarted broker).
"""

import json
import uuid
from typing import Any

from myqueue.core import defaults, framing
from myqueue.core.reasons import Reason
from myqueue.core.refusal import Refusal
from myqueue.net.pool import Answer, ConnectFailed, ConnectionBroke, NoAnswer, Pool
from myqueue.service.auth import auth_headers

JSON_HEADERS = {"Content-Type": "application/json"}
BATCH_HEADERS = {"Content-Type": framing.BATCH_CONTENT_TYPE}
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})


class BrokerLostPartition(Exception):
    """The broker answered NOT_HERE (e.g. it restarted in memory mode before being told again)."""


class BrokerClient:
    """HTTP calls from a manager to brokers; thread-safe (one shared keep-alive pool)."""

    def __init__(self, timeout: float = defaults.BROKER_CALL_TIMEOUT_S, token: str | None = None):
        self._timeout = timeout
        self._pool = Pool(max_idle_per_host=defaults.SERVICE_THREADS, headers=auth_headers(token))

    def close(self) -> None:
        self._pool.close()

    def _send(self, method: str, address: str, path: str, timeout: float, body: bytes | None, headers) -> Answer:
        url = f"{address}{path}"
        try:
            try:
                return self._pool.request(method, url, body=body, headers=headers, timeout=timeout)
            except ConnectionBroke:
                if method not in IDEMPOTENT:
                    raise
                # A kept connection the broker closed (it restarted): safe to send again.
                return self._pool.request(method, url, body=body, headers=headers, timeout=timeout)
        except ConnectFailed as e:
            raise Refusal(Reason.UNAVAILABLE, f"broker at {address} is unavailable (cannot connect)") from e
        except NoAnswer as e:
            raise Refusal(
                Reason.UNAVAILABLE, f"broker at {address} did not answer within {timeout:g} s (outcome unknown)"
            ) from e
        except (ConnectionBroke, OSError) as e:
            raise Refusal(
                Reason.UNAVAILABLE, f"broker at {address} is unavailable ({type(e).__name__}; outcome unknown)"
            ) from e

    def _call(
        self,
        method: str,
        address: str,
        path: str,
        *,
        timeout: float | None = None,
        body: bytes | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        if json_body is not None:
            body, headers = json.dumps(json_body).encode(), JSON_HEADERS
        answer = self._send(method, address, path, timeout or self._timeout, body, headers)
        try:
            reply = json.loads(answer.body)
        except ValueError as e:
            raise Refusal(Reason.UNAVAILABLE, f"broker at {address} answered {answer.status} without JSON") from e
        if not isinstance(reply, dict):
            raise Refusal(Reason.UNAVAILABLE, f"broker at {address} answered {answer.status} with unexpected JSON")
        if answer.status < 400 and reply.get("status") == "success":
            return reply.get("message")
        reason = reply.get("reason")
        if reason == Reason.NOT_HERE.value:
            raise BrokerLostPartition(reply.get("message", "not here"))
        try:
            parsed = Reason(reason)
        except ValueError:
            parsed = Reason.UNAVAILABLE
        if parsed is Reason.INTERNAL:
            parsed = Reason.UNAVAILABLE
        raise Refusal(parsed, f"broker at {address}: {reply.get('message', answer.reason)}")

    # --- partitions -------------------------------------------------------------------------
    def list_partitions(self, address: str, timeout: float = 2.0) -> dict:
        return self._call("GET", address, "/v1/partitions", timeout=timeout)

    def host(self, address: str, topic: str, partition: str) -> dict:
        return self._call("PUT", address, f"/v1/partitions/{topic}/{partition}")

    def unhost(self, address: str, topic: str, partition: str) -> None:
        self._call("DELETE", address, f"/v1/partitions/{topic}/{partition}")

    def append_one(self, address: str, topic: str, partition: str, value: bytes) -> int:
        return self.append(address, topic, partition, [value])

    def append(self, address: str, topic: str, partition: str, values: list[bytes]) -> int:
        """Append ``values`` as one batch (one storage write); returns the first one's offset."""
        # The request id lets the broker recognise its own replay after a lost PostgreSQL reply.
        result = self._call(
            "POST",
            address,
            f"/v1/partitions/{topic}/{partition}/records?request_id={uuid.uuid4().hex}",
            body=framing.encode_batch(values),
            headers=BATCH_HEADERS,
        )
        return int(result["base_offset"])

    # --- positions -------------------------------------------------------------------------------
    def _position_path(self, topic: str, partition: str, group: str) -> str:
        return f"/v1/partitions/{topic}/{partition}/positions/{group}"

    def set_position_latest(self, address: str, topic: str, partition: str, group: str) -> int:
        result = self._call("PUT", address, self._position_path(topic, partition, group), json_body={"at": "latest"})
        return int(result["offset"])

    def get_position(self, address: str, topic: str, partition: str, group: str) -> tuple[int | None, int]:
        result = self._call("GET", address, self._position_path(topic, partition, group))
        return result["offset"], int(result["end_offset"])

    def take_one(self, address: str, topic: str, partition: str, group: str) -> tuple[int, str] | None:
        """Take one record for ``group``. Each consume call's take has its own id, so a take whose
        answer was lost is asked again once with the same id: the broker then returns the record
        the first one took (if it took one) instead of the next, and nothing is skipped."""
        path = self._position_path(topic, partition, group) + "/take"
        body = {"take_id": uuid.uuid4().hex}
        try:
            result = self._call("POST", address, path, json_body=body)
        except Refusal as e:
            if e.reason not in (Reason.UNAVAILABLE, Reason.OUTCOME_UNKNOWN):
                raise
            result = self._call("POST", address, path, json_body=body)
        records = result["records"]
        return (records[0]["offset"], records[0]["value"]) if records else None

    # --- health ------------------------------------------------------------------------------------
    def ready(self, address: str, timeout: float = 2.0) -> bool:
        try:
            answer = self._send("GET", address, "/readyz", timeout, None, None)
        except Refusal:
            return False
        return answer.status == 200

    def selftest(self, address: str) -> dict:
        return self._call("POST", address, "/v1/selftest", timeout=30)
