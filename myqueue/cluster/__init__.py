"""The local cluster: the embedded default that runs a whole myqueue cluster as local processes.

A supervisor starts the primary and replica managers and the brokers on loopback, restarts the
ones that die, serves the launcher control API the primary uses to start brokers, and can run a
private PostgreSQL for persistent mode. The services themselves live in ``myqueue.broker`` and
``myqueue.manager``; this package only starts, watches and stops them.
"""
