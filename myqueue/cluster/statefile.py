"""The state file: how scripts and tests find a running local cluster's control API.

It holds the control API's bearer token, so it is written with mode 0600 (atomically, so a
reader never sees half a file) and removed when the supervisor exits.
"""

import json
import os
from pathlib import Path
from typing import Any


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def read_state(path: Path) -> dict[str, Any]:
    state = json.loads(path.read_text())
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a myqueue cluster state file")
    return state


def remove_state(path: Path) -> None:
    path.unlink(missing_ok=True)
