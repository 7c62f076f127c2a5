"""The CLI's friction items of issue 16, each run as a real ``python -m myqueue`` process (or through
``main`` in this process) against a real local cluster where it needs one."""

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_until
from tests.localcluster import REPO_ROOT, LocalCluster

CLI_TIMEOUT_S = 60
REPLICA_CATCH_UP_S = 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One memory-mode cluster for the module: every test uses topics of its own."""
    with LocalCluster(Path(tmp_path_factory.mktemp("cli-cluster")), brokers=2) as running:
        yield running


def manager(cluster: LocalCluster) -> list[str]:
    return ["--broker", cluster.primary_address, "--replica-port", str(cluster.replica_port)]


def topics(cluster: LocalCluster) -> dict[str, dict[str, str]]:
    listing = run_cli("topics", "list", "--json", *manager(cluster))
    assert listing.returncode == 0, listing.stderr
    return json.loads(listing.stdout)


def wait_partitions(cluster: LocalCluster, topic: str, expected: set[str]) -> None:
    """Until the read-only manager lists exactly ``expected`` for ``topic``."""
    seen: list[dict] = [{}]

    def listed() -> bool:
        seen[0] = topics(cluster)
        return set(seen[0].get(topic, {})) == expected

    wait_until(
        listed, REPLICA_CATCH_UP_S, message=lambda: f"{topic}: wanted {expected}, last listing {seen[0]}"
    )


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


def test_topics_create_takes_a_count_and_is_all_or_nothing(cluster):
    made = run_cli("topics", "create", "TC1", "--partitions", "3", *manager(cluster))
    assert made.returncode == 0, made.stderr
    wait_partitions(cluster, "TC1", {"P1", "P2", "P3"})  # before the fix: one partition named "3"

    clash = run_cli("topics", "create", "TC1", "--partitions", "P4", "P3", *manager(cluster))
    assert clash.returncode == 1 and "TC1 already has P3; nothing created" in clash.stderr
    bad = run_cli("topics", "create", "TC1", "--partitions", "P5", "no@good", *manager(cluster))
    assert bad.returncode == 2 and "nothing created" in bad.stderr and "Traceback" not in bad.stderr
    assert set(topics(cluster)["TC1"]) == {"P1", "P2", "P3"}  # neither P4 nor P5 was made

    again = run_cli(
        "topics", "create", "TC1", "--partitions", "P3", "P4", "--if-not-exists", *manager(cluster)
    )
    assert again.returncode == 0, again.stderr
    assert "TC1:P3 exists already, skipped" in again.stdout
    wait_partitions(cluster, "TC1", {"P1", "P2", "P3", "P4"})


def test_consume_from_beginning_reads_what_was_produced_before_it(cluster, tmp_path):
    assert run_cli("topics", "create", "TB", "--partitions", "2", *manager(cluster)).returncode == 0
    wait_partitions(cluster, "TB", {"P1", "P2"})
    (tmp_path / "producer_1.txt").write_text("t MSG1 P1 TB\nt MSG2 P2 TB\nt MSG3 P1 TB\n")
    produced = run_cli("produce", "--id", "1", "--topics", "TB:P1", "TB:P2", "--log_loc", str(tmp_path),
                       *manager(cluster))  # fmt: skip
    assert produced.returncode == 0, produced.stderr

    consume = [
        "consume",
        "--topics",
        "TB:*",
        "--log_loc",
        str(tmp_path),
        "--idle-timeout",
        "1",
        *manager(cluster),
    ]
    late = run_cli(*consume, "--id", "1")
    assert late.returncode == 0, late.stderr
    assert (tmp_path / "consumer_1.txt").read_text() == ""  # the seed's rule: from the subscription on
    early = run_cli(*consume, "--id", "2", "--from-beginning")
    assert early.returncode == 0, early.stderr
    assert "consumed 3 messages" in early.stdout
    lines = (tmp_path / "consumer_2.txt").read_text().splitlines()
    assert sorted(lines) == sorted(["TB:P1     MSG1", "TB:P2     MSG2", "TB:P1     MSG3"])
    assert [line for line in lines if line.startswith("TB:P1")] == ["TB:P1     MSG1", "TB:P1     MSG3"]


def test_myqueue_broker_names_the_cluster_and_refusal_comes_with_a_hint(cluster):
    at_cluster = {"MYQUEUE_BROKER": cluster.primary_address}
    made = run_cli("topics", "create", "TE", "--partitions", "1", "--replica-port", str(cluster.replica_port),
                   env=at_cluster)  # fmt: skip
    assert made.returncode == 0, made.stderr  # without the variable it went to 127.0.0.1:5000
    wait_partitions(cluster, "TE", {"P1"})
    assert "$MYQUEUE_BROKER" in run_cli("topics", "list", "--help").stdout

    nowhere = f"127.0.0.1:{free_port('127.0.0.1')}"
    refused = run_cli("topics", "list", env={"MYQUEUE_BROKER": nowhere})
    assert refused.returncode == 1
    assert f"no cluster answered at {nowhere}" in refused.stderr
    assert "myqueue cluster up" in refused.stderr and "MYQUEUE_BROKER=HOST[:PORT]" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_log_loc_takes_the_kebab_case_spelling_too(cluster, tmp_path):
    assert run_cli("topics", "create", "TL", "--partitions", "1", *manager(cluster)).returncode == 0
    wait_partitions(cluster, "TL", {"P1"})
    (tmp_path / "producer_7.txt").write_text("t ONE P1 TL\n")
    for flag in ("--log-loc", "--log_loc"):  # the seed's spelling keeps working
        produced = run_cli(
            "produce", "--id", "7", "--topics", "TL:P1", flag, str(tmp_path), *manager(cluster)
        )
        assert produced.returncode == 0, produced.stderr
        assert "produced 1 messages" in produced.stdout


def test_verify_help_says_the_durability_promise_once():
    shown = run_cli("verify", "--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # argparse rewraps the description
    assert text.count("the durability promise") == 1 and "promise.the" not in text


MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_http_api_doc_links_only_to_files_in_the_repo():
    doc = REPO_ROOT / "docs" / "http-api.md"
    text = doc.read_text()
    targets = [t.split("#")[0] for t in MARKDOWN_LINK.findall(text) if not t.startswith(("http", "#"))]
    assert targets, "the seed's endpoints should be linked to the repo's description of them"
    for target in targets:
        path = (doc.parent / target).resolve()
        assert path.is_file() and path.is_relative_to(REPO_ROOT), f"{target} is not a file in the repo"
    assert "../shared/" not in text  # the seed's notes live outside the repo


def test_every_listing_command_prints_json_with_output_json(cluster):
    assert run_cli("topics", "create", "TJ", "--partitions", "2", *manager(cluster)).returncode == 0
    wait_partitions(cluster, "TJ", {"P1", "P2"})
    listed = run_cli("topics", "list", "--output", "json", *manager(cluster))
    assert listed.returncode == 0, listed.stderr
    assert set(json.loads(listed.stdout)["TJ"]) == {"P1", "P2"}
    assert json.loads(run_cli("topics", "list", "--json", *manager(cluster)).stdout) == json.loads(
        listed.stdout
    )

    brokers = run_cli("brokers", "list", "--output", "json", *manager(cluster))
    assert brokers.returncode == 0, brokers.stderr
    assert sorted(json.loads(brokers.stdout)) == ["broker0", "broker1"]

    groups = run_cli("groups", "list", "--output", "json", *manager(cluster))
    assert groups.returncode == 0, groups.stderr
    assert json.loads(groups.stdout) == []  # no consumer group has joined

    status = run_cli("cluster", "status", "--state-file", str(cluster.state_file), "--output", "json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["supervisor_pid"] == cluster.supervisor_pid
    assert {name: info["pid"] for name, info in shown["processes"].items()} == {
        name: info["pid"] for name, info in cluster.processes().items()
    }


def test_cluster_status_finds_a_cluster_up_started_without_a_state_file(tmp_path):
    """``cluster up`` writes its state file by default (named after the primary's port), ``cluster
    status`` finds it from the port alone, a second ``cluster up`` refused on the same ports leaves
    the first one's file alone, and the file goes with the cluster."""
    primary, replica = free_port(), free_port()
    env = {**os.environ, "MYQUEUE_STATE_DIR": str(tmp_path / "run")}
    ports = ["--primary-port", str(primary), "--replica-port", str(replica)]
    state = tmp_path / "run" / f"cluster-{primary}.json"
    up = subprocess.Popen(
        [sys.executable, "-m", "myqueue", "cluster", "up", "--brokers", "1", *ports],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            lambda: state.exists() or up.poll() is not None,
            90,
            message=lambda: f"no {state}; supervisor exit code {up.poll()}",
        )
        assert up.poll() is None, up.communicate(timeout=CLI_TIMEOUT_S)[0][-2000:]
        status = run_cli("cluster", "status", "--primary-port", str(primary), "--json", env=env)
        assert status.returncode == 0, status.stderr
        listing = json.loads(status.stdout)
        assert listing["supervisor_pid"] == up.pid and {"primary", "replica"} <= set(listing["processes"]), (
            listing
        )

        again = run_cli("cluster", "up", "--brokers", "1", *ports, env=env)
        assert again.returncode != 0 and "port in use" in again.stderr, again.stderr[-2000:]
        assert state.exists(), "the refused second 'cluster up' removed the running cluster's state file"
    finally:
        up.terminate()
        up.communicate(timeout=CLI_TIMEOUT_S)
    assert not state.exists(), f"{state} outlived its cluster"
    gone = run_cli("cluster", "status", "--primary-port", str(primary), env=env)
    assert gone.returncode == 1 and "no running cluster" in gone.stderr and "cluster up" in gone.stderr, (
        gone.stderr
    )


def test_completion_script_completes_commands_in_a_real_bash():
    script = run_cli("completion", "bash")
    assert script.returncode == 0, script.stderr
    words = {"myqueue to": "topics", "myqueue topics cr": "create", "myqueue cluster st": "status"}
    lines = [
        f'COMP_WORDS=({typed}); COMP_CWORD={len(typed.split()) - 1}; _shtab_myqueue; echo "${{COMPREPLY[*]}}"'
        for typed in words
    ]
    completed = subprocess.run(
        ["bash", "-c", script.stdout + "\n" + "\n".join(lines)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split("\n")[: len(words)] == list(words.values()), completed.stdout
    for shell in ("zsh", "tcsh"):
        other = run_cli("completion", shell)
        assert other.returncode == 0 and "myqueue" in other.stdout, other.stderr


def test_one_topic_creation_rule_for_the_cli_and_the_library(cluster, tmp_path):
    """Topics are made explicitly; the only implicit creation is the seed contract's: registering a
    seed producer for T:P makes partition P. So ``produce --topics T:P`` makes it, while ``T:*`` and
    ``Producer.send`` refuse a topic that does not exist, with the same reason."""
    from myqueue import Producer
    from myqueue.client.errors import TopicNotFound

    (tmp_path / "producer_1.txt").write_text("t MSG1 P1 TAUTO\n")
    made = run_cli(
        "produce", "--id", "1", "--topics", "TAUTO:P1", "--log_loc", str(tmp_path), *manager(cluster)
    )
    assert made.returncode == 0, made.stderr
    wait_partitions(cluster, "TAUTO", {"P1"})

    (tmp_path / "producer_2.txt").write_text("t MSG1 * TMISSING\n")
    whole = run_cli(
        "produce", "--id", "2", "--topics", "TMISSING:*", "--log_loc", str(tmp_path), *manager(cluster)
    )
    assert whole.returncode == 1 and "TMISSING" in whole.stderr, (whole.returncode, whole.stderr)
    with Producer("127.0.0.1", cluster.primary_port, cluster.replica_port) as producer:
        with pytest.raises(TopicNotFound):
            producer.send("TMISSING", "x").result(timeout=CLI_TIMEOUT_S)
    assert "TMISSING" not in topics(cluster)


def test_brokers_test_says_it_plainly(cluster):
    tested = run_cli("brokers", "test", "broker0", *manager(cluster))
    assert tested.returncode == 0, tested.stderr
    assert (
        tested.stdout.startswith("broker0: self-test passed (") and "All test cases" not in tested.stdout
    ), tested.stdout


def test_long_produce_and_consume_print_progress_lines(cluster, tmp_path):
    assert run_cli("topics", "create", "TPROG", "--partitions", "1", *manager(cluster)).returncode == 0
    wait_partitions(cluster, "TPROG", {"P1"})
    (tmp_path / "producer_1.txt").write_text("".join(f"t M{i} P1 TPROG\n" for i in range(40)))
    fast = {"MYQUEUE_PROGRESS_EVERY_S": "0.05"}
    produced = run_cli("produce", "--id", "1", "--topics", "TPROG:P1", "--interval", "0.01", "--log_loc",
                       str(tmp_path), *manager(cluster), env=fast)  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    assert re.search(r"^producer 1: \d+/40 sent$", produced.stderr, re.M), produced.stderr
    consumed = run_cli("consume", "--id", "1", "--topics", "TPROG:*", "--from-beginning", "--idle-timeout", "1",
                       "--log_loc", str(tmp_path), *manager(cluster), env=fast)  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    assert "consumed 40 messages" in consumed.stdout, consumed.stdout
