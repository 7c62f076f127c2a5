"""Browser sessions for the console when auth is on: a signed cookie instead of the token itself.

A browser cannot add ``Authorization: Bearer`` to a page load, so the console's login form takes
the cluster token once (a POST, which the service guard refuses cross-site) and answers a cookie
``<expiry>.<nonce>.<mac>``, where the MAC is an HMAC-SHA256 keyed by a key derived from the token.
The browser never stores the token; changing the token ends every session; a session ends after
``SESSION_S`` or at logout (its nonce is revoked in memory until it would have expired).
The cookie is HttpOnly, SameSite=Strict, scoped to the console's path, and Secure over HTTPS.
"""

import hashlib
import hmac
import secrets
import threading
import time

COOKIE = "myqueue_console"
SESSION_S = 8 * 3600
MAX_REVOKED = 10_000


class Sessions:
    def __init__(self, token: str, lifetime_s: int = SESSION_S):
        self._key = hashlib.sha256(b"myqueue-console-session\0" + token.encode()).digest()
        self._token = token.encode()
        self._lifetime = lifetime_s
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    def token_matches(self, given: str) -> bool:
        """Constant-time comparison of a submitted token with the cluster's."""
        return hmac.compare_digest(given.encode(), self._token)

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        payload = f"{int(time.time()) + self._lifetime}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._mac(payload)}"

    def valid(self, cookie: str | None) -> bool:
        parts = _split(cookie)
        if parts is None:
            return False
        expires, nonce, mac = parts
        if not hmac.compare_digest(mac, self._mac(f"{expires}.{nonce}")):
            return False
        if int(expires) <= time.time():
            return False
        with self._lock:
            return nonce not in self._revoked

    def revoke(self, cookie: str | None) -> None:
        if not self.valid(cookie):
            return
        parts = _split(cookie)
        if parts is None:  # valid() said it splits: cannot happen, and python -O must not remove the check
            return
        now = time.time()
        with self._lock:
            for nonce, until in list(self._revoked.items()):
                if until <= now:
                    del self._revoked[nonce]
            if len(self._revoked) < MAX_REVOKED:
                self._revoked[parts[1]] = float(parts[0])

    @property
    def lifetime_s(self) -> int:
        return self._lifetime


def _split(cookie: str | None) -> tuple[str, str, str] | None:
    if not cookie or len(cookie) > 256:
        return None
    parts = cookie.split(".")
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return parts[0], parts[1], parts[2]
