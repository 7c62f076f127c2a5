"""The operator's own Kubernetes calls (kopf does the watching; this does the reading and writing).

Thin and typed as plain dicts: objects go in and come out in the API server's JSON shape, the
same shape ``render`` produces and consumes. Errors stay ``kubernetes.client.ApiException``
except where an answer is expected (404 on a get or delete, 409 on a create): the handlers turn
the rest into ``kopf.TemporaryError``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client import ApiException

from .config import GROUP, VERSION

log = logging.getLogger(__name__)


def load_client_config() -> client.ApiClient:
    """In-cluster credentials when running in a Pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def _json(response: Any) -> dict:
    return json.loads(response.data)


class Kube:
    """Reads and writes of Brokers, Topics, Pods, Services, Namespaces; thread-safe."""

    def __init__(self, api_client: client.ApiClient):
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    # --- custom resources ---------------------------------------------------------------------------------
    def get_custom(self, plural: str, namespace: str, name: str) -> dict | None:
        try:
            return _json(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name, _preload_content=False
                )
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list_custom(self, plural: str, namespace: str, selector: str = "") -> list[dict]:
        answer = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, label_selector=selector, _preload_content=False
        )
        return _json(answer).get("items", [])

    def annotate_custom(
        self, plural: str, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> bool:
        """Merge ``annotations`` into the object's (None removes one); False when it was already gone."""
        try:
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, {"metadata": {"annotations": annotations}},
                _preload_content=False,
            )  # fmt: skip
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def delete_custom(self, plural: str, namespace: str, name: str) -> bool:
        """Request deletion (finalizers then run); False when it was already gone."""
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, _preload_content=False
            )
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def patch_status(self, plural: str, namespace: str, name: str, status: dict) -> None:
        """JSON merge patch of the status subresource (None values delete fields)."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status}, _preload_content=False
            )
        except ApiException as e:
            if e.status == 404:  # deleted meanwhile: nothing to report on
                return
            raise

    # --- pods and services ----------------------------------------------------------------------------------
    def get_pod(self, namespace: str, name: str) -> dict | None:
        try:
            return _json(self.core.read_namespaced_pod(name, namespace, _preload_content=False))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list_pods(self, namespace: str, selector: str) -> list[dict]:
        answer = _json(
            self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        )
        return answer.get("items") or []

    def get_service(self, namespace: str, name: str) -> dict | None:
        try:
            return _json(self.core.read_namespaced_service(name, namespace, _preload_content=False))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def create_pod(self, pod: dict) -> dict:
        """Create, or return the existing Pod of that name (a concurrent reconcile made it)."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        try:
            return _json(self.core.create_namespaced_pod(namespace, pod, _preload_content=False))
        except ApiException as e:
            if e.status == 409:
                return self.get_pod(namespace, name) or {}
            raise

    def create_service(self, service: dict) -> dict:
        namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
        try:
            return _json(self.core.create_namespaced_service(namespace, service, _preload_content=False))
        except ApiException as e:
            if e.status == 409:
                return self.get_service(namespace, name) or {}
            raise

    def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete (only the Pod with ``uid`` when given); False when it was already gone."""
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)) if uid else None
        try:
            self.core.delete_namespaced_pod(name, namespace, body=body, _preload_content=False)
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise
        return True

    def delete_service(self, namespace: str, name: str) -> bool:
        try:
            self.core.delete_namespaced_service(name, namespace, _preload_content=False)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    # --- namespaces ----------------------------------------------------------------------------------------------
    def namespace_terminating(self, namespace: str) -> bool:
        """Is the namespace being deleted? False when we may not read it (RBAC: get on our own
        namespace only) — then deletion checks behave as usual."""
        try:
            ns = _json(self.core.read_namespace(namespace, _preload_content=False))
        except ApiException as e:
            if e.status not in (403, 404):
                raise
            log.debug("cannot read namespace %s (%s): assuming it is not terminating", namespace, e.status)
            return False
        return (
            bool(ns.get("metadata", {}).get("deletionTimestamp"))
            or ns.get("status", {}).get("phase") == "Terminating"
        )
