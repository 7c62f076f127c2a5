"""One log format across a whole local cluster: the supervisor and every child write the same
format (text: ``[name] <UTC time> LEVEL logger: message``; JSON: one object a line naming its
process), and ``--access-log`` adds one record per request with its fields."""

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.helpers import free_port, wait_until
from tests.localcluster import REPO_ROOT

STOP_TIMEOUT_S = 60
TEXT = re.compile(
    r"^\[(supervisor|primary|replica|broker\d)\] \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) \S+: "
)


def run_cluster(tmp_path: Path, *options: str) -> list[str]:
    """``cluster up`` with ``options``; one seed request once it is ready; its stderr lines after it stopped."""
    primary, replica = free_port(), free_port()
    state = tmp_path / "run" / f"cluster-{primary}.json"
    stderr = tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYQUEUE_LOG")}
    env["MYQUEUE_STATE_DIR"] = str(tmp_path / "run")
    with stderr.open("w") as err:
        up = subprocess.Popen(
            [sys.executable, "-m", "myqueue", "cluster", "up", "--brokers", "1", "--primary-port", str(primary),
             "--replica-port", str(replica), *options],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        try:
            wait_until(
                lambda: state.exists() or up.poll() is not None,
                90,
                message=lambda: f"not ready; exit code {up.poll()}; stderr:\n{stderr.read_text()[-3000:]}",
            )
            assert up.poll() is None, stderr.read_text()[-3000:]
            with urllib.request.urlopen(f"http://127.0.0.1:{replica}/topics", timeout=10) as answer:  # noqa: S310
                assert answer.status == 200
        finally:
            up.terminate()
            up.wait(STOP_TIMEOUT_S)
    return stderr.read_text().splitlines()


def test_text_lines_share_one_format_and_name_their_process(tmp_path):
    lines = run_cluster(tmp_path)
    assert lines, "the cluster logged nothing"
    odd = [line for line in lines if not TEXT.match(line)]
    assert not odd, "\n".join(odd[:20])
    assert {TEXT.match(line).group(1) for line in lines} >= {"supervisor", "primary", "replica", "broker0"}


def test_json_lines_with_the_access_log(tmp_path):
    lines = run_cluster(tmp_path, "--log-format", "json", "--access-log")
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    assert all({"time", "level", "logger", "process", "message"} <= set(r) for r in records), records[:5]
    assert {r["process"] for r in records} >= {"supervisor", "primary", "replica", "broker0"}
    access = [r for r in records if r["logger"] == "myqueue.access"]
    asked = [r for r in access if r["process"] == "replica" and r["path"] == "/topics"]
    assert asked and asked[0]["method"] == "GET" and asked[0]["status"] == 200, access[:10]
    assert isinstance(asked[0]["duration_ms"], float) and asked[0]["client"] == "127.0.0.1"
