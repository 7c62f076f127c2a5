"""The console's guard and its login: the before-request check (bearer header or session cookie),
the strict headers on every answer, and the login and logout forms.

Login and logout are POSTs of a form: the service guard in front (service/guard.py) refuses them
cross-site (Origin / Sec-Fetch-Site), and they change only the browser's cookie.
"""

from flask import Response, jsonify, redirect, request, url_for
from flask.typing import ResponseReturnValue

from myqueue.service.auth import authorized

from .context import ConsoleContext
from .session import COOKIE

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
OPEN_ENDPOINTS = frozenset({"console.login", "console.login_form", "console.static"})


def authenticate(c: ConsoleContext) -> ResponseReturnValue | None:
    if c.sessions is None or request.endpoint in OPEN_ENDPOINTS:
        return None
    if c.token and authorized(request.headers.get("Authorization"), c.token):
        return None
    if c.sessions.valid(request.cookies.get(COOKIE)):
        return None
    if request.path.startswith("/api/"):
        return jsonify(status="failure", message="log in to the console first", reason="UNAUTHORIZED"), 401
    return redirect(url_for("console.login_form"), 303)


def headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # Not no-referrer: with it a browser sends "Origin: null" on form posts, which the guard refuses.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def login_form(c: ConsoleContext) -> ResponseReturnValue:
    return c.page("login.html", title="Log in", error=None)


def login(c: ConsoleContext) -> ResponseReturnValue:
    if c.sessions is None:
        return redirect(url_for("console.cluster"), 303)
    given = request.form.get("token", "")
    if not given or not c.sessions.token_matches(given):
        return c.page("login.html", 401, title="Log in", error="wrong token")
    response = redirect(url_for("console.cluster"), 303)
    response.set_cookie(
        COOKIE,
        c.sessions.issue(),
        max_age=c.sessions.lifetime_s,
        path=request.script_root or "/",
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


def logout(c: ConsoleContext) -> ResponseReturnValue:
    response = redirect(url_for("console.login_form"), 303)
    if c.sessions is not None:
        c.sessions.revoke(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path=request.script_root or "/", httponly=True, samesite="Strict")
    return response


ROUTES = (
    ("/login", "login_form", "GET", login_form),
    ("/login", "login", "POST", login),
    ("/logout", "logout", "POST", logout),
)
