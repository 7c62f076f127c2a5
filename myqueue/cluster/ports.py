"""Free TCP ports on loopback, chosen by the operating system.

Binding port 0 and closing leaves a short window in which another process could take the
port; the supervisor accepts that (a child that cannot bind dies and is reported) rather than
passing listening sockets to services that expect a --port.
"""

import socket

from myqueue.core.defaults import DEFAULT_HOST


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """True if something already listens on ``host:port`` (we could not bind it as a service would)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress does: TIME_WAIT is no owner
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
