"""``tools/gpu_check.sh --dry-run``: the GPU check's own code path (config overrides, worker, timing,
table, throughput benchmark) at smoke sizes on a CPU, so a GPU's few minutes measure instead of debug.

About 2-3 minutes of one CPU core (one worker process trains each smoke config for one iteration).
"""
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

OPTIONAL = {'detectron2 not installed', 'config missing'}  # the only acceptable reasons to skip a row


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(output: str) -> dict:
    """``check -> (iterations/s, memory, status)`` from the printed summary table."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if len(cells) == 5 and cells[0] not in ('check', '---') and not cells[0].startswith('-'):
            rows[cells[0]] = cells[2:]
    return rows


def test_dry_run_passes_every_check(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(['bash', os.path.join(REPO_ROOT, 'tools', 'gpu_check.sh'), '--dry-run',
                             '--work-dir', str(tmp_path)], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=900)
    output = result.stdout + result.stderr
    rows = table_rows(result.stdout)
    expected = list(load_tool('gpu_check').CHECKS) + ['throughput_benchmark']
    assert list(rows) == expected, output[-4000:]
    for name, (speed, memory, status) in rows.items():
        if status.startswith('skipped'):
            assert status.split(': ', 1)[1] in OPTIONAL, (name, status)
            continue
        assert status.startswith('pass'), (name, status, output[-4000:])
        assert memory.endswith('(RSS)'), (name, memory)  # on a CPU, labelled as resident memory
        if name != 'throughput_benchmark':
            assert float(speed) > 0, (name, speed)
    assert re.search(r'best efficientsam_ti [\d.e+-]+ img/s', rows['throughput_benchmark'][2])
    assert result.returncode == 0, output[-4000:]


@pytest.mark.parametrize('argv, message', [
    (['--batch', 'vitdet_x=2'], "--batch 'vitdet_x=2': expected CHECK=N"),
    (['--batch', 'vitdet_b=0'], "--batch 'vitdet_b=0': expected CHECK=N"),
])
def test_bad_arguments_fail_with_one_error_line(argv, message):
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'tools', 'gpu_check.py'), *argv],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f'error: {message}'), result.stderr


def test_without_a_gpu_only_the_dry_run_runs():
    pytest.importorskip('torch')
    import torch
    if torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'tools', 'gpu_check.py')], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == 'error: no CUDA device here: run tools/gpu_check.sh --dry-run on a CPU machine'
