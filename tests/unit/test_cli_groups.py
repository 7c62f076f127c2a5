"""``myqueue groups``: argument checks that refuse before anything is sent, and the table layout."""

import pytest

from myqueue.cli.common import table
from myqueue.cli.main import main


def test_reset_offsets_needs_exactly_one_target(capsys):
    with pytest.raises(SystemExit) as none:
        main(["groups", "reset-offsets", "g"])
    assert none.value.code == 2
    with pytest.raises(SystemExit) as two:
        main(["groups", "reset-offsets", "g", "--to-earliest", "--to-latest"])
    assert two.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["groups", "reset-offsets", "g", "--to-offset", "-1"], "--to-offset is an offset >= 0"),
        (["groups", "reset-offsets", "g", "--to-earliest", "--topic", "a-b"], "nothing reset"),
        (["groups", "describe", "x" * 200], "error:"),
        (["groups", "delete", "bad name"], "error:"),
    ],
)
def test_bad_names_and_offsets_exit_2_without_a_call(argv, says, capsys):
    # --broker points at a closed port: a call would be exit 1 with a connection error instead
    assert main([*argv, "--broker", "127.0.0.1:9", "--timeout", "0.2"]) == 2
    assert says in capsys.readouterr().err


def test_table_aligns_columns_and_prints_none_as_a_dash():
    assert table([("T", "P1", None), ("LONGER", "P10", 5)], ("TOPIC", "PARTITION", "LAG")) == [
        "TOPIC   PARTITION  LAG",
        "T       P1         -",
        "LONGER  P10        5",
    ]
