"""The console's Blueprint: GET pages and one JSON endpoint, plus the login and logout forms.

Every page route is GET and changes nothing. Login and logout are POSTs of a form: the service
guard in front (service/guard.py) refuses them cross-site (Origin / Sec-Fetch-Site), and they
change only the browser's cookie. Every answer carries a strict Content-Security-Policy (scripts
and styles only from the console's own static files, no inline code, no framing).

The handlers are in one module per job, each with its ``ROUTES`` (rule, endpoint, method, handler):

| module | routes |
|---|---|
| ``auth.py`` | the guard (bearer header or session cookie), the strict headers, /login, /logout |
| ``cluster.py`` | /, /cluster, /topics, /topics/<topic> |
| ``records.py`` | /topics/<topic>/<partition>/records (text, JSON or hex) |
| ``groups.py`` | /groups: a consumer group's positions and lag |
| ``throughput.py`` | /throughput and the JSON it polls, /api/throughput |

``context.py`` holds what they share (``ConsoleContext``): the replica, the broker reader, the
sampler, the session store and the token; each handler gets it as its first argument.
"""

from functools import partial

from flask import Blueprint

from myqueue.manager.replica import Replica

from . import auth, cluster, groups, records, throughput
from .context import ConsoleContext
from .records import hexdump, printable

PREFIX = "/console"
ROUTES = (*auth.ROUTES, *cluster.ROUTES, *records.ROUTES, *groups.ROUTES, *throughput.ROUTES)


def console_blueprint(replica: Replica, token: str | None) -> Blueprint:
    bp = Blueprint("console", __name__, template_folder="templates", static_folder="static")
    context = ConsoleContext.create(replica, token)
    bp.before_request(partial(auth.authenticate, context))
    bp.after_request(auth.headers)
    for rule, endpoint, method, handler in ROUTES:
        bp.add_url_rule(rule, endpoint, partial(handler, context), methods=[method])
    return bp


__all__ = ["PREFIX", "console_blueprint", "hexdump", "printable"]
