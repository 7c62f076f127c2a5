"""bench/peers/nats.py's server configuration: class (c) syncs after every write, the others keep
the default. When the bench's nats-server is built (``python -m bench`` builds it on first use),
the server itself checks both files (``nats-server -t``); Debian's 2.9 refuses the class (c) one."""

import subprocess
from pathlib import Path

import pytest

pytest.importorskip("nats")
from bench.peers import nats  # noqa: E402


def test_only_the_class_c_server_syncs_after_every_write(tmp_path: Path) -> None:
    synced = nats.config_text(tmp_path / "s", sync_always=True)
    default = nats.config_text(tmp_path / "d", sync_always=False)
    assert "sync_interval: always" in synced and f'store_dir: "{tmp_path / "s"}"' in synced
    assert "sync_interval" not in default and f'store_dir: "{tmp_path / "d"}"' in default


def test_the_pinned_server_accepts_both_configurations(tmp_path: Path) -> None:
    binary = nats.cached_binary()
    if not binary.is_file():
        pytest.skip(f"the bench's nats-server {nats.NATS_SERVER_VERSION} is not built here")
    for sync_always in (True, False):
        conf = tmp_path / f"{sync_always}.conf"
        conf.write_text(nats.config_text(tmp_path / "store", sync_always))
        checked = subprocess.run(
            [str(binary), "-c", str(conf), "-t"], capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
