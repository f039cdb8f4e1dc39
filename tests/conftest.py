"""Shared test fixtures: paths to the repository's data and the shared reference outputs."""
import os

import pytest
import torch

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
SHARED = os.path.join(REPO_ROOT, '..', 'shared')
REFERENCE_DIR = os.path.join(SHARED, 'reference', 'efficientsam')

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope='session')
def reference_dir():
    if not os.path.isdir(REFERENCE_DIR):
        pytest.skip(f'shared reference outputs not found at {REFERENCE_DIR}')
    return REFERENCE_DIR
