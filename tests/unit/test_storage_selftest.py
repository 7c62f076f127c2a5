"""The broker's storage self-test refuses a misbehaving backend even under ``python -O``.

``python -O`` removes ``assert`` statements, so a self-test written with them passes whatever the
storage does; the checks raise ``SelfTestFailed`` explicitly instead.
"""

import subprocess
import sys
import textwrap

import pytest

from myqueue.broker.storage.base import SelfTestFailed, expect
from myqueue.broker.storage.memory import MemoryStorage

# Run in a child interpreter: MemoryStorage.append is broken there (every batch gets offset 5).
BROKEN_SELFTEST = textwrap.dedent(
    """
    import sys
    assert False, "this line proves asserts are off"  # removed by -O; without -O it fails the run
    from myqueue.broker.storage.base import SelfTestFailed
    from myqueue.broker.storage.memory import MemoryStorage

    MemoryStorage.append = lambda self, topic, partition, body, count, request_id=None: 5
    try:
        checks = MemoryStorage().selftest()
    except SelfTestFailed as e:
        print(f"refused: {e}")
        sys.exit(0)
    print(f"passed: {checks}")
    sys.exit(1)
    """
)


def test_the_selftest_passes_on_working_storage():
    assert MemoryStorage().selftest() == [
        "append assigns consecutive offsets",
        "read from a mid-batch offset",
        "take advances the group position",
    ]


def test_a_failed_check_is_a_typed_error_naming_the_check():
    with pytest.raises(SelfTestFailed, match=r"second batch's offset: expected 2, got 3"):
        expect(3, 2, "second batch's offset")
    assert issubclass(SelfTestFailed, AssertionError)  # what the broker's /v1/selftest route catches


def test_the_selftest_still_refuses_under_python_dash_O():
    result = subprocess.run(
        [sys.executable, "-O", "-c", BROKEN_SELFTEST], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"rc {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "refused: first batch's offset: expected 0, got 5" in result.stdout
