"""Optional bearer-token authentication for every service.

With no token configured a service answers anyone: it is then meant for loopback or a cluster's
internal network only (the default of `myqueue cluster up` and of the Helm chart's Services).
With a token (``MYQUEUE_TOKEN``, or ``MYQUEUE_TOKEN_FILE`` naming a file such as a mounted
Kubernetes Secret) every request must carry ``Authorization: Bearer <token>`` except the probes
``/healthz`` and ``/readyz``, which kubelets and supervisors call without credentials. One token
serves the whole cluster: managers present it to brokers and the replica to the primary (the
header they send is built in ``myqueue.net.envelope.bearer``).
"""

import hmac
import os
from pathlib import Path

TOKEN_ENV = "MYQUEUE_TOKEN"  # noqa: S105 - the name of a variable, not a secret
TOKEN_FILE_ENV = "MYQUEUE_TOKEN_FILE"  # noqa: S105 - the name of a variable, not a secret
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def load_token() -> str | None:
    """The cluster token from the environment or the file it names; None when auth is off."""
    path = os.environ.get(TOKEN_FILE_ENV)
    if path:
        token = Path(path).read_text().strip()
        if not token:
            raise ValueError(f"{TOKEN_FILE_ENV} names an empty file: {path}")
        return token
    return os.environ.get(TOKEN_ENV) or None


def authorized(header: str | None, token: str) -> bool:
    """Constant-time check of an ``Authorization`` header against the token."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].encode(), token.encode())
