"""A service's route table, from which both entry points are generated: the Flask view and, for a
hot route, the lean lane's entry (``service/lean.py``).

Each route is declared once, as a ``Route`` (method, Flask-style rule, handler and what the paths
need to know about it), in a table beside its handlers (``broker/routes/``, ``manager/routes/``).
``install_routes`` turns the table into Flask views, the lane's entries and the list of
state-changing GETs the guard refuses HEAD and cross-site requests on and the seed's paths it answers
refusals with 400 on (``service/guard.py``).

A handler is a plain function ``handler(context, call, *path_parameters)``: ``context`` is the
service's own (storage, counters, the manager's role), ``call`` the request as a ``Call`` — the
same object whether Flask or the lane serves it — and the rule's ``<name>`` segments follow in the
order of the rule, under the same names. It returns the success envelope's ``message``, a
``Success`` (a status other than 200, or fields beside the message), or a ``Raw`` answer, and
raises for every failure: the one mapping from exceptions to answers (``envelope.failure_for``)
answers it on either path.
"""

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request

from .base_app import OBSERVE_EXTENSION, ServiceState
from .call import Call
from .envelope import AS_REFUSAL_EXTENSION, AsRefusal, Raw, Success, seed_endpoint, success
from .guard import SEED_PATHS, STATE_CHANGING_GETS
from .lean import LeanRoutes

Handler = Callable[..., Any]  # (context, call, *path parameters) -> message | Success | Raw
_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@dataclass(frozen=True, slots=True)
class Route:
    """One route of a service, declared once for both entry points."""

    method: str
    rule: str  # Flask-style: "/v1/partitions/<topic>/<partition>"
    handler: Handler
    seed: bool = False  # the seed's wire contract: every refusal answered 400, its JSON types accepted
    lean: bool = False  # hot: also served by the lean lane, in its plain form
    changes_state: bool = False  # a GET with side effects: HEAD and cross-site requests refused (guard)

    def __post_init__(self) -> None:
        if self.changes_state and (self.method != "GET" or "<" in self.rule):
            raise ValueError(
                f"{self.method} {self.rule}: only a GET on an exact path is marked as changing state"
            )
        if self.seed and "<" in self.rule:
            raise ValueError(f"{self.rule}: the seed's routes are exact paths")
        names = list(inspect.signature(self.handler).parameters)[2:]
        if names != self.parameters:
            raise ValueError(
                f"{self.method} {self.rule}: {self.handler.__name__} takes {names}, not {self.parameters}"
            )

    @property
    def parameters(self) -> list[str]:
        """The rule's ``<name>`` segments, in order."""
        return _PARAMETER.findall(self.rule)


def flask_answer(answer: Any) -> Response:
    """A handler's return value as Flask's response."""
    if isinstance(answer, Raw):
        response = Response(answer.body, mimetype=answer.content_type)
        response.headers.update(answer.headers)
        return response
    if isinstance(answer, Success):
        return success(answer.message, answer.status, **answer.extra)
    return success(answer)


def _flask_view(route: Route, context: object) -> Callable[..., Response]:
    handler, seed = route.handler, route.seed

    def view(**parameters: str) -> Response:
        call = Call(
            request.args, request.content_type, request.remote_addr, request.get_data, seed, request.environ
        )
        return flask_answer(handler(context, call, **parameters))

    view.__name__ = handler.__name__
    view.__doc__ = handler.__doc__
    return seed_endpoint(view) if seed else view


def install_routes(
    app: Flask,
    state: ServiceState,
    routes: Iterable[Route],
    context: object,
    *,
    token: str | None = None,
    as_refusal: AsRefusal | None = None,
) -> None:
    """Generate the Flask views, the lean lane in front of Flask (``app.wsgi_app``) and the guard's
    state-changing GETs from one table. ``as_refusal`` maps the service's own exceptions to
    refusals on both paths."""
    routes = tuple(routes)
    if as_refusal is not None:
        app.extensions[AS_REFUSAL_EXTENSION] = as_refusal
    for route in routes:
        app.add_url_rule(
            route.rule, route.handler.__name__, _flask_view(route, context), methods=[route.method]
        )
    lane = LeanRoutes(
        app.wsgi_app,
        state,
        app.extensions[OBSERVE_EXTENSION],
        max_body=app.config["MAX_CONTENT_LENGTH"],
        token=token,
        as_refusal=as_refusal,
    )
    for route in routes:
        if route.lean:
            lane.add(route.method, route.rule, route.handler, context, seed=route.seed)
    app.wsgi_app = lane  # type: ignore[method-assign]  # WSGI middleware, as Flask's docs do it
    app.extensions[STATE_CHANGING_GETS] = state_changing_gets(routes)
    app.extensions[SEED_PATHS] = tuple(route.rule for route in routes if route.seed)


def state_changing_gets(routes: Iterable[Route]) -> tuple[str, ...]:
    """The exact paths of the GETs that change state (the guard's list)."""
    return tuple(route.rule for route in routes if route.changes_state)
