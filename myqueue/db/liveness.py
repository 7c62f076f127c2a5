"""Whether an idle PostgreSQL connection is still good, told without sending anything (the pool's
connections, ``pool.py``, and the loop's own, ``loop.py``)."""

import select

import psycopg2
import psycopg2.extensions


def dead_while_idle(conn: psycopg2.extensions.connection) -> bool:
    """True when an idle connection is closed or has something to read: an idle server sends
    nothing but its goodbye (an error notice before it exits, or the FIN of a closed socket)."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg2.Error):
        return True
    return bool(readable)
