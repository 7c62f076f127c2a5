"""The two ways a storage call can fail, as the HTTP layer and the services see them.

They live in ``core`` so that the HTTP layer maps them to answers without importing a database
driver. The distinction is Jepsen's *indeterminate operation*: ``StorageUnavailable`` means the
work was certainly not applied (nothing reached the server, or the transaction was rolled back),
so the caller may retry; ``OutcomeUnknown`` means the statement may have been executed and
committed although no reply arrived, so nobody may retry it blindly.
"""


class StorageUnavailable(Exception):
    """The store could not be reached; the work was not applied."""


class OutcomeUnknown(Exception):
    """The work may or may not have been applied: its reply from the store was lost."""
