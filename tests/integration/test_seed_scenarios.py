"""The seed's 2P2C and 5P3C scenarios through `myqueue produce` / `myqueue consume`, as the
seed's README ran them (same flags, same input files, same output format).

What must hold: every consumer receives each message produced to its partitions exactly once
and, per partition, in the partition's log order; 5P3C consumer 1 gets all 72 messages.
"""

import importlib.util
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.integration.seedcalls import Seed

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO.parent / "shared" / "seed" / "scenarios"


def _kind_driver():
    """The kind e2e driver that users' CI runs: the seed's layouts and the CLI process wrapper live there once."""
    spec = importlib.util.spec_from_file_location("kind_scenario", REPO / "e2e" / "kind" / "scenario.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_DRIVER = _kind_driver()
LAYOUTS = _DRIVER.LAYOUTS
Proc = _DRIVER.Proc
expected_partitions = _DRIVER.expected_partitions


def cli(command: str, ident: int, specs: list[str], cluster, log_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "myqueue",
        command,
        "--id",
        str(ident),
        "--topics",
        *specs,
        "--broker",
        f"127.0.0.1:{cluster.primary_port}",
        "--replica-port",
        str(cluster.replica_port),
        "--log_loc",
        str(log_dir),
        *extra,
    ]


@pytest.mark.parametrize("store", ["memory", "postgres"])
@pytest.mark.parametrize("scenario", ["2P2C", "5P3C"])
def test_scenario(scenario, store, local_cluster, tmp_path, request):
    layout = LAYOUTS[scenario]
    log_dir = tmp_path / scenario
    shutil.copytree(SCENARIOS / scenario, log_dir)
    for old in log_dir.glob("consumer_*.txt"):
        old.unlink()  # the recorded outputs of the original run: ours must be written afresh
    dsn = request.getfixturevalue("fresh_pg_dsn") if store == "postgres" else None
    with local_cluster(store=store, brokers=3, dsn=dsn) as cluster:
        seed = Seed(cluster.primary_url, cluster.replica_url)
        for topic, parts in layout["partitions"].items():
            for part in parts:
                seed.add_partition(topic, part)
        seed.wait_replica_synced()

        procs: list[Proc] = []
        try:
            consumers = {
                i: Proc(
                    f"consumer {i}",
                    cli("consume", i, specs, cluster, log_dir, "--idle-timeout", "10"),
                    tmp_path,
                )
                for i, specs in layout["consumers"].items()
            }
            procs += consumers.values()
            for i, proc in consumers.items():
                wait_until(
                    lambda p=proc, i=i: (
                        any(f"consumer {i} registered" in line for line in p.lines)
                        or p.popen.poll() is not None
                    ),
                    60,
                    message=lambda p=proc: "\n".join(p.lines),
                )
                assert proc.popen.poll() is None, "\n".join(proc.lines)
            producers = {
                i: Proc(f"producer {i}", cli("produce", i, specs, cluster, log_dir), tmp_path)
                for i, specs in layout["producers"].items()
            }
            procs += producers.values()
            for i, proc in producers.items():
                assert proc.wait(120) == 0, f"producer {i}:\n" + "\n".join(proc.lines)
            for i, proc in consumers.items():
                assert proc.wait(120) == 0, f"consumer {i}:\n" + "\n".join(proc.lines)
        finally:
            for proc in procs:
                proc.kill()

        logs = {(t, p): seed.partition_log(t, p) for t, parts in layout["partitions"].items() for p in parts}

    assert sum(len(records) for records in logs.values()) == layout["total"]
    for i, specs in layout["consumers"].items():
        received = defaultdict(list)
        lines = (log_dir / f"consumer_{i}.txt").read_text().splitlines()
        for line in lines:
            where, message = line.split(maxsplit=1)
            assert line == f"{where}     {message}"  # the seed's format: five spaces
            topic, part = where.split(":")
            received[(topic, part)].append(message)
        wanted = expected_partitions(specs, layout)
        assert set(received) <= wanted
        for key in wanted:
            # Exactly once and in partition order: the consumer's sequence IS the partition's log.
            assert received.get(key, []) == logs[key], (i, key)
    if scenario == "5P3C":
        assert len((log_dir / "consumer_1.txt").read_text().splitlines()) == 72
