"""The state file: how scripts and tests find a running local cluster's control API.

It holds the control API's bearer token, so it is written with mode 0600 (atomically, so a
reader never sees half a file) and removed when the supervisor exits. ``cluster up`` writes one by
default, named after the primary's port in the user's runtime directory, so that ``cluster status``
finds the cluster without being told where.
"""

import json
import os
from pathlib import Path
from typing import Any


def default_state_path(primary_port: int) -> Path:
    """``$MYQUEUE_STATE_DIR``, else ``$XDG_RUNTIME_DIR/myqueue``, else ``~/.cache/myqueue/run``:
    ``cluster-<primary port>.json``."""
    base = os.environ.get("MYQUEUE_STATE_DIR")
    if not base:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = (
            os.path.join(runtime, "myqueue")
            if runtime
            else os.path.join(Path.home(), ".cache", "myqueue", "run")
        )
    return Path(base) / f"cluster-{primary_port}.json"


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
