"""The broker's route table: every route declared once (``service/routes.py``), by job.

| module | routes |
|---|---|
| ``partitions.py`` | list, host, read, unhost a partition |
| ``records.py`` | append a batch, fetch batches (hot: lean lane too) |
| ``positions.py`` | a group's position: read, set, take (take is hot) |
| ``admin.py`` | the storage self-test |

``context.py`` holds what the handlers share and storage's exceptions as refusals.
"""

from . import admin, partitions, positions, records

ROUTES = (*partitions.ROUTES, *records.ROUTES, *positions.ROUTES, *admin.ROUTES)
