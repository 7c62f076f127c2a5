"""The web console: read-only pages about the cluster, served by the read-only manager at /console.

The console is a Flask Blueprint on a small Flask app of its own, mounted under ``/console`` in
front of the manager's app (``mount``). Why not a blueprint on the manager's app itself: that
app's before-request hook accepts only ``Authorization: Bearer``, which a browser cannot send
on a page load; the console accepts the bearer header *or* its own session cookie
(``session.py``), and lets the login form and its static files through. Everything in front of
the manager (the service guard's Host and cross-site checks, the connection and body limits)
is in front of the console too, as it wraps the whole WSGI app; the server's bearer-token check is
not (``OWN_AUTH_PREFIXES``: the console checks the header or its cookie itself), and a body over
the console's 4 KiB is refused from its headers.

See docs/console.md.
"""

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from myqueue.manager.replica import Replica
from myqueue.service.guard import OWN_AUTH_PREFIXES

from .views import PREFIX, console_blueprint

MAX_FORM_BYTES = 4096


def create_console_app(replica: Replica, token: str | None) -> Flask:
    app = Flask("myqueue-console", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_FORM_BYTES
    app.register_blueprint(console_blueprint(replica, token))
    return app


def mount(app: Flask, replica: Replica | None, token: str | None) -> None:
    """Serve the console at /console in front of ``app`` when it is the replica's (no-op on the primary)."""
    if replica is None:
        return
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {PREFIX: create_console_app(replica, token)})  # type: ignore[method-assign]
    app.extensions[OWN_AUTH_PREFIXES] = {PREFIX: MAX_FORM_BYTES}  # its cookie or header, its 4 KiB forms
