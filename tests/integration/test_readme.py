"""Every shell and Python block of the README, run verbatim in a fresh checkout against the cluster
the README's set-up starts (``myqueue cluster up``: memory, 3 brokers, primary :5000, replica :5001).

A block is skipped only when the line before its fence says ``<!-- readme-test: skip: REASON -->``
(the set-up itself, benchmarks, multi-minute fault runs covered by tests of their own). The blocks
run in README order in one checkout and one cluster, as a reader would type them; each must exit 0.
"""

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from myqueue.cluster.ports import port_in_use
from myqueue.core import defaults
from tests.localcluster import REPO_ROOT, LocalCluster

BLOCK_TIMEOUT_S = 240
FENCE = re.compile(r"^```(\w+)\s*$")
SKIP = re.compile(r"^<!-- readme-test: skip: (.+) -->$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    skip: str | None

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.language})"


def readme_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened is None:
            i += 1
            continue
        end = lines.index("```", i + 1)
        marker = SKIP.match(lines[i - 1]) if i else None
        blocks.append(
            Block(i + 1, opened.group(1), "\n".join(lines[i + 1 : end]) + "\n", marker and marker.group(1))
        )
        i = end + 1
    return blocks


def test_readme_blocks_are_parsed_with_their_markers():
    blocks = readme_blocks((REPO_ROOT / "README.md").read_text())
    assert {b.language for b in blocks} <= {"bash", "python"}, [str(b) for b in blocks]
    assert blocks[0].skip and "cluster up" in blocks[0].text, "the set-up block must be the first and marked"
    assert sum(b.skip is None for b in blocks) >= 4, [str(b) for b in blocks if b.skip is None]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files git tracks, as they are in the working tree (a fresh clone has nothing else)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    root = tmp_path_factory.mktemp("readme") / "myqueue"
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


@pytest.fixture(scope="module")
def readme_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    busy = [
        port
        for port in (defaults.PRIMARY_PORT, defaults.REPLICA_PORT)
        if port_in_use(defaults.DEFAULT_HOST, port)
    ]
    if busy:
        pytest.fail(
            f"the README's blocks talk to ports {defaults.PRIMARY_PORT}/{defaults.REPLICA_PORT}; busy: {busy}"
        )
    with LocalCluster(
        Path(tmp_path_factory.mktemp("readme-cluster")),
        brokers=3,
        primary_port=defaults.PRIMARY_PORT,
        replica_port=defaults.REPLICA_PORT,
    ) as cluster:
        yield cluster


RUNNABLE = [b for b in readme_blocks((REPO_ROOT / "README.md").read_text()) if b.skip is None]


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_readme_block_runs_verbatim(block: Block, checkout: Path, readme_cluster: LocalCluster):
    argv = (
        ["bash", "-e", "-o", "pipefail", "-c", block.text]
        if block.language == "bash"
        else [sys.executable, "-c", block.text]
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MYQUEUE_")
    }  # the README's reader has none set
    done = subprocess.run(
        argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S
    )
    assert done.returncode == 0, (
        f"{block} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
