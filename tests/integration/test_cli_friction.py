"""The CLI's friction items of issue 16, each run as a real ``python -m myqueue`` process (or through
``main`` in this process) against a real local cluster where it needs one."""

import importlib.metadata
import os
import subprocess
import sys

from tests.localcluster import REPO_ROOT

CLI_TIMEOUT_S = 60


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m myqueue ARGS`` from the repo root, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "myqueue", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def test_version_and_bare_command_print_without_a_usage_error():
    version = run_cli("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"myqueue {importlib.metadata.version('myqueue')}"
    bare = run_cli()
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.startswith("usage: myqueue") and "topics" in bare.stdout and bare.stderr == ""
