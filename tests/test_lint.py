"""Lint is part of the test command: ``ruff check .`` (configured in pyproject.toml) must pass, and the
pre-commit hook runs the ruff that requirements.txt pins."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT


def test_ruff_check_passes():
    if importlib.util.find_spec('ruff') is None:
        pytest.skip('ruff is not installed (pip install -e ".[dev]" installs the pinned one)')
    result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache', '.'], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, f'ruff check . found problems:\n{result.stdout}{result.stderr}'


def test_pre_commit_hook_runs_the_pinned_ruff():
    with open(os.path.join(REPO_ROOT, 'requirements.txt')) as file:
        pin = re.search(r'^ruff==(\S+)$', file.read(), re.M)
    with open(os.path.join(REPO_ROOT, '.pre-commit-config.yaml')) as file:
        hook = re.search(r'ruff-pre-commit\s+rev: v(\S+)', file.read())
    assert pin and hook and hook.group(1) == pin.group(1), (pin, hook)
