"""The code base keeps one formatter and one linter configuration (ruff, pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str) -> subprocess.CompletedProcess:
    venv_bin = str(Path(sys.executable).parent)
    executable = shutil.which("ruff", path=venv_bin) or shutil.which("ruff")
    if executable is None:
        pytest.fail("ruff is missing; it comes with the test extras: pip install -e '.[test]'")
    return subprocess.run([executable, *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_lint_passes():
    result = ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied():
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
