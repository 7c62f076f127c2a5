"""The codebase's own rules, checked on every run: lint (incl. security rules) and layering."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_including_security_rules():
    result = run(sys.executable, "-m", "ruff", "check", "myqueue", "operator", "tests", "bench", "e2e")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied():
    """The code is formatted by ``ruff format`` (applied once to the whole tree; the pre-commit hook keeps it)."""
    result = run(
        sys.executable, "-m", "ruff", "format", "--check", "myqueue", "operator", "tests", "bench", "e2e"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers_hold():
    """The packages are layered (service never imports db), core imports no I/O, the client no server code."""
    lint_imports = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = run(lint_imports)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and " 0 broken" in result.stdout


def test_the_package_ships_its_py_typed_marker():
    """PEP 561: without the marker (and it in the package data) users' type checkers ignore the hints."""
    assert (ROOT / "myqueue" / "py.typed").is_file()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["myqueue"]


def test_mypy_passes_at_the_configured_level():
    """[tool.mypy] in pyproject.toml: the defaults plus check_untyped_defs, over every module (none is excluded)."""
    assert "ignore_errors" not in (ROOT / "pyproject.toml").read_text(), "no module may be excluded from mypy"
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


# A reader that may stop before its writer has finished: under `set -o pipefail` the writer's SIGPIPE
# (exit 141) fails the pipeline, and `set -e` then ends the script at random (a CI run died so in
# e2e/controlplane/build.sh's `coredns -version | head -n 1`).
EARLY_EXIT_READER = re.compile(r"\|\s*(head\b|grep\s+-[A-Za-z]*q)")


def test_no_pipefail_script_pipes_into_a_reader_that_exits_early():
    scripts = subprocess.run(
        ["git", "ls-files", "*.sh", ".ci/run"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    offenders = []
    for name in scripts:
        text = (ROOT / name).read_text()
        if "pipefail" not in text:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if not line.lstrip().startswith("#") and EARLY_EXIT_READER.search(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert scripts and not offenders, "\n".join(offenders)
