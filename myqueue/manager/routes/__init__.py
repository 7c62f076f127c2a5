"""The managers' route table: every route declared once (``service/routes.py``), by job.

| module | routes |
|---|---|
| ``seed.py`` | the seed's endpoints (wire contract unchanged; produce and consume are hot: lean lane too) |
| ``v1.py`` | /v1: metadata, the cluster view and its long-poll, broker registration |
| ``groups.py`` | /v1/groups: consumer-group heartbeats, commits, inspection, offset resets (primary) |

``context.py`` holds what the handlers share: the node and its role, counters, the long-poll budget.
"""

from . import groups, seed, v1

ROUTES = (*seed.ROUTES, *v1.ROUTES, *groups.ROUTES)
