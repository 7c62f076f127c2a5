"""From the one host a user gives to the two managers' URLs."""

import pytest

from myqueue.client.address import manager_urls


@pytest.mark.parametrize(
    ("args", "primary", "replica"),
    [
        (("10.110.10.216",), "http://10.110.10.216:5000", "http://10.110.10.216:5001"),  # the seed's form
        (("localhost:6000",), "http://localhost:6000", "http://localhost:6001"),
        (("localhost:6000", None, 7000), "http://localhost:6000", "http://localhost:7000"),
        (
            ("localhost", "6000", "6005"),
            "http://localhost:6000",
            "http://localhost:6005",
        ),  # ApiHandler's strings
        (("https://mq.example:443",), "https://mq.example:443", "https://mq.example:444"),
        (("[::1]:6000",), "http://[::1]:6000", "http://[::1]:6001"),
        # Two hosts (the chart's two Services, from a pod): the replica's own port, else the given, else 5001.
        (("mq-primary:5000,mq-replica:5001",), "http://mq-primary:5000", "http://mq-replica:5001"),
        (("mq-primary, https://mq-replica:8443",), "http://mq-primary:5000", "https://mq-replica:8443"),
        (("mq-primary:6000,mq-replica", None, 6001), "http://mq-primary:6000", "http://mq-replica:6001"),
        (("mq-primary:6000,mq-replica",), "http://mq-primary:6000", "http://mq-replica:5001"),
    ],
)
def test_manager_urls(args, primary, replica):
    managers = manager_urls(*args)
    assert (managers.primary, managers.replica) == (primary, replica)


@pytest.mark.parametrize("host", ["", "ftp://h", "h:notaport", "h:5000,", ",h", "h,r:notaport"])
def test_bad_addresses_are_refused(host):
    with pytest.raises(ValueError, match="manager address"):
        manager_urls(host)
