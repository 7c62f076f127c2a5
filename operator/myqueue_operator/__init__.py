"""The myqueue Kubernetes operator (kopf): Broker and Topic resources reconciled into the managers.

Modules: ``config`` (settings and defaults), ``render`` (pure: ``render.broker``,
``render.topic``, ``render.conditions`` — objects and statuses),
``kube``/``primary`` (I/O), ``brokers``/``topics`` (reconcilers), ``handlers`` (kopf wiring),
``__main__`` (``python -m myqueue_operator``). The package is not named ``operator``: that
would shadow the standard library's module.
"""
