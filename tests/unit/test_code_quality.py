"""The codebase's own rules, checked on every run: lint (incl. security rules) and layering."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_including_security_rules():
    result = run(sys.executable, "-m", "ruff", "check", "myqueue", "operator", "tests", "bench", "e2e")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers_hold():
    """Core imports no I/O, the client never imports server code, storage never imports HTTP."""
    lint_imports = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = run(lint_imports)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and " 0 broken" in result.stdout
