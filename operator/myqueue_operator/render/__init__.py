"""Pure rendering: Kubernetes objects and statuses as functions of a custom resource.

Everything here takes plain dicts (the shape the API server returns) and returns plain dicts,
with time injected, so it is unit-tested without a cluster (tests/unit/test_operator_render.py).
No I/O and no kopf: applying objects and talking to the managers is ``kube.py`` and
``primary.py``; deciding when to call what is ``brokers.py`` and ``topics.py``.

| module | renders |
|---|---|
| ``broker`` | a Broker's Pod and Service, its labels, spec checks, observed Pod state, phase and status |
| ``topic`` | a Topic's spec checks, partition plan, placement and status |
| ``conditions`` | the Ready condition and its ``ConditionReason``s, the invalid-spec status, which changes post Events |
"""
