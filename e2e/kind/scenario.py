"""Run one of the seed's scenarios (2P2C, 5P3C) through the `myqueue` CLI and check the outcome.

Used by e2e/kind/run.sh against managers reached through `kubectl port-forward`, and by
tests/integration/test_kind_scenario_driver.py against a local cluster. The topics must already
exist (Topic resources in kind); this waits until the replica serves every partition of the
layout, reads every partition's log (the command after `--`, fed partition_logs.py on stdin),
starts the consumers and waits until each says it registered (the seed's consumers see only what
is produced after they subscribe), runs the producers, waits for the consumers to go idle and
exit, reads the logs again and asserts:

- every consumer received exactly the records produced to its partitions in this run, each once
  and in its partition's order (its file, per partition, equals the new part of that log);
- it received nothing from other partitions; the scenario's total is right (5P3C: consumer 1,
  subscribed to everything, got all 72).

Exit status 0 when every assertion held; otherwise 1 with the reason on stderr.
"""

# A test driver: it starts our own CLI and the log-reading command it is given.
# ruff: noqa: S603, S310

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
PARTITION_LOGS = HERE / "partition_logs.py"

# The seed's layouts (shared/seed/SEED-API.md), kept only here: tests/integration/test_seed_scenarios.py
# loads them from this file; topics/*.yaml must match (checked by tests/unit/test_kind_e2e_files.py).
LAYOUTS = {
    "2P2C": {
        "partitions": {"T1": ["P1", "P2"], "T2": ["P1", "P2"]},
        "producers": {1: ["T1:P1", "T2:P1", "T1:P2", "T2:P2"], 2: ["T1:*", "T2:*"]},
        "consumers": {1: ["T1:P1", "T2:P1", "T1:P2", "T2:P2"], 2: ["T1:*", "T2:*"]},
        "total": 10,
    },
    "5P3C": {
        "partitions": {"T1": ["P1", "P2"], "T2": ["P1", "P2"], "T3": ["P1", "P2", "P3"]},
        "producers": {1: ["T1:*", "T3:P2"], 2: ["T1:P2", "T2:P1"], 3: ["T2:*"], 4: ["T2:P2"], 5: ["T3:*"]},
        "consumers": {1: ["T1:*", "T2:*", "T3:*"], 2: ["T2:*", "T1:P1"], 3: ["T3:*", "T1:P2"]},
        "total": 72,
    },
}


class ScenarioFailed(Exception):
    """An assertion about the scenario's outcome did not hold."""


class Proc:
    """A CLI process whose output is collected line by line."""

    def __init__(self, name: str, argv: list[str], cwd: Path):
        self.name = name
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return f"--- {self.name} ---\n" + "\n".join(self.lines)

    def wait(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise ScenarioFailed(f"{self.name} did not finish within {timeout:.0f}s\n{self.output()}") from e
        self.reader.join(5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    """Poll ``check()`` until it returns a truthy value; ScenarioFailed after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError) as e:
            last = repr(e)
        else:
            if last:
                return last
        time.sleep(interval)
    raise ScenarioFailed(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def replica_serves(replica_url: str, layout: dict) -> bool:
    """True when the replica's /topics has every partition of the layout, each on a broker.

    Sends $MYQUEUE_TOKEN as a bearer token when set (a cluster with auth on), as the CLI does."""
    token = os.environ.get("MYQUEUE_TOKEN")
    request = urllib.request.Request(
        f"{replica_url}/topics", headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        topics = json.load(response)["message"]
    return all(
        topics.get(topic, {}).get(part) for topic, parts in layout["partitions"].items() for part in parts
    )


def read_logs(command: list[str], timeout: float = 120) -> dict[str, dict[str, list[str]]]:
    result = subprocess.run(
        command, input=PARTITION_LOGS.read_text(), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise ScenarioFailed(f"reading the partition logs failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout)


def expected_partitions(specs: list[str], layout: dict) -> set[tuple[str, str]]:
    wanted = set()
    for spec in specs:
        topic, part = spec.split(":")
        parts = layout["partitions"][topic] if part == "*" else [part]
        wanted |= {(topic, p) for p in parts}
    return wanted


def check(layout: dict, log_dir: Path, before: dict, after: dict) -> list[str]:
    """The assertions; returns one line per consumer describing what it received."""
    new = {}
    for topic, parts in layout["partitions"].items():
        for part in parts:
            old = before.get(topic, {}).get(part, [])
            now = after[topic][part]
            if now[: len(old)] != old:
                raise ScenarioFailed(f"{topic}:{part}: the log changed below its old end")
            new[(topic, part)] = now[len(old) :]
    produced = sum(len(records) for records in new.values())
    if produced != layout["total"]:
        raise ScenarioFailed(
            f"{produced} records were produced to the layout's partitions, expected {layout['total']}"
        )
    report = []
    for i, specs in layout["consumers"].items():
        received: dict[tuple[str, str], list[str]] = defaultdict(list)
        lines = (log_dir / f"consumer_{i}.txt").read_text().splitlines()
        for line in lines:
            where, message = line.split(maxsplit=1)
            if line != f"{where}     {message}":
                raise ScenarioFailed(f"consumer {i}: line not in the seed's format: {line!r}")
            topic, part = where.split(":")
            received[(topic, part)].append(message)
        wanted = expected_partitions(specs, layout)
        if not set(received) <= wanted:
            raise ScenarioFailed(
                f"consumer {i} received from partitions it did not subscribe to: {set(received) - wanted}"
            )
        for key in sorted(wanted):
            # Exactly once and in partition order: the consumer's sequence IS the new part of the log.
            if received.get(key, []) != new[key]:
                raise ScenarioFailed(
                    f"consumer {i}, {key[0]}:{key[1]}: received {received.get(key, [])}, the partition got {new[key]}"
                )
        report.append(f"consumer {i}: {len(lines)} messages from {len(wanted)} partitions, as produced")
    if "T3" in layout["partitions"] and len((log_dir / "consumer_1.txt").read_text().splitlines()) != 72:
        raise ScenarioFailed("5P3C: consumer 1 did not receive all 72 messages")
    return report


def run(args: argparse.Namespace) -> list[str]:
    layout = LAYOUTS[args.scenario]
    host, _, port = args.broker.partition(":")
    replica_url = f"http://{host}:{args.replica_port}"
    wait_for(
        f"the replica to serve the {args.scenario} topics",
        lambda: replica_serves(replica_url, layout),
        args.timeout,
    )
    before = read_logs(args.read_logs)

    work = Path(tempfile.mkdtemp(prefix=f"myqueue-{args.scenario}-"))
    log_dir = work / args.scenario
    shutil.copytree(SCENARIOS / args.scenario, log_dir)
    cli = [sys.executable, "-m", "myqueue"]
    common = ["--broker", args.broker, "--replica-port", str(args.replica_port), "--log_loc", str(log_dir)]
    procs: list[Proc] = []
    try:
        consumers = {
            i: Proc(f"consumer {i}", [*cli, "consume", "--id", str(i), "--topics", *specs, *common,
                                      "--idle-timeout", str(args.idle_timeout)], work)
            for i, specs in layout["consumers"].items()
        }  # fmt: skip
        procs += consumers.values()
        for i, proc in consumers.items():
            wait_for(
                f"consumer {i} to register",
                lambda p=proc, i=i: (
                    any(f"consumer {i} registered" in line for line in p.lines) or p.popen.poll() is not None
                ),
                args.timeout,
            )
            if proc.popen.poll() is not None:
                raise ScenarioFailed(f"consumer {i} exited before registering\n{proc.output()}")
        producers = {
            i: Proc(f"producer {i}", [*cli, "produce", "--id", str(i), "--topics", *specs, *common], work)
            for i, specs in layout["producers"].items()
        }
        procs += producers.values()
        for proc in [*producers.values(), *consumers.values()]:
            if proc.wait(args.timeout) != 0:
                raise ScenarioFailed(f"{proc.name} failed\n{proc.output()}")
        after = read_logs(args.read_logs)
        return check(layout, log_dir, before, after)
    finally:
        for proc in procs:
            proc.kill()
        if args.keep_logs:
            print(f"scenario files kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(LAYOUTS), required=True)
    parser.add_argument("--broker", required=True, metavar="HOST:PORT", help="the primary manager")
    parser.add_argument("--replica-port", type=int, required=True, help="the replica manager's port on HOST")
    parser.add_argument(
        "--idle-timeout", type=float, default=20.0, help="consumers stop after S idle seconds (the seed: 20)"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for each wait")
    parser.add_argument("--keep-logs", action="store_true", help="keep the producer/consumer files")
    parser.add_argument(
        "read_logs", nargs=argparse.REMAINDER, metavar="-- COMMAND",
        help="command that runs partition_logs.py from stdin, e.g. kubectl exec -i deploy/P -- python -",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.read_logs[:1] == ["--"]:
        args.read_logs = args.read_logs[1:]
    if not args.read_logs:
        parser.error("the log-reading command after -- is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except ScenarioFailed as e:
        print(f"FAILED {args.scenario}: {e}", file=sys.stderr)
        return 1
    for line in report:
        print(f"{args.scenario}: {line}")
    print(f"PASSED {args.scenario}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
