"""The broker's self-test: storage checks itself (the primary's ``/brokers/test`` calls it)."""

import logging

from myqueue.service.call import Call
from myqueue.service.routes import Route

from ..storage.base import SelfTestFailed
from .context import BrokerContext

log = logging.getLogger(__name__)


def selftest(broker: BrokerContext, call: Call) -> dict:
    try:
        checks = broker.storage.selftest()
    except SelfTestFailed as e:
        log.error("self-test failed: %s", e)
        return {"passed": False, "checks": [], "failed": str(e) or "assertion failed"}
    return {"passed": True, "checks": checks}


ROUTES = (Route("POST", "/v1/selftest", selftest),)
