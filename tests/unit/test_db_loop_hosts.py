"""Which DSNs the loop's PostgreSQL connection resolves itself before connecting (``db/loop.py``):
libpq would look a host name up inside ``PQconnectStart``, blocking the loop."""

import pytest

from myqueue.db.loop import _host_to_resolve


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("host=127.0.0.1 port=5432 dbname=d", (None, True)),
        ("host=::1 dbname=d", (None, True)),
        ("host=/var/run/postgresql dbname=d", (None, True)),  # a socket directory
        ("dbname=d", (None, True)),  # libpq's default: the socket directory
        ("host=db.example hostaddr=10.0.0.5 dbname=d", (None, True)),  # the address is given
        ("host=db.example port=6543 dbname=d", (("db.example", 6543), True)),
        ("postgresql://u:p@postgres.myqueue.svc/d", (("postgres.myqueue.svc", 5432), True)),
        ("host=10.0.0.1,10.0.0.2 dbname=d", (None, True)),  # a failover list of addresses
        ("host=a.example,b.example dbname=d", (None, False)),  # names libpq would resolve: not on the loop
    ],
)
def test_host_names_are_looked_up_off_libpq(dsn, expected):
    assert _host_to_resolve(dsn) == expected
