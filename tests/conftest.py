"""Shared test fixtures.

Everything the suite needs lives in the repository (``tests/data``, ``data/coco_mini``), so a fresh
clone passes on its own. ``../shared`` only adds extra cases (``tests/extras``: the full-size
references and the larger COCO subset), which are not even collected where it is absent.
"""
import os

import pytest
import torch

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
TEST_DATA = os.path.join(REPO_ROOT, 'tests', 'data')
EFFICIENTSAM_TINY = os.path.join(TEST_DATA, 'efficientsam_tiny')
COCO_MINI = os.path.join(REPO_ROOT, 'data', 'coco_mini')
SHARED = os.path.join(REPO_ROOT, '..', 'shared')

SHARED_COCO_CC = os.path.join(SHARED, 'data', 'coco_cc')

collect_ignore = [] if os.path.isdir(SHARED) else ['extras']
# COCO subsets for data-driven tests: the bundled one always, the larger shared one as an extra case.
COCO_ROOTS = [COCO_MINI] + ([SHARED_COCO_CC] if os.path.isdir(SHARED_COCO_CC) else [])

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def official_state_dict(config: str = 'ti', seed: int = 1234) -> dict:
    """A full-size EfficientSAM state dict in the official layout, with seeded random weights.

    Stands in for the released ``efficient_sam_vit{t,s}.pt`` (same keys and shapes); N(0, 0.05) noise,
    1-D ``.weight`` tensors around 1, like the shared reference's recipe.
    """
    from efficientsam_plugins.build import build_efficient_sam
    generator = torch.Generator().manual_seed(seed)
    state = build_efficient_sam(config).state_dict()
    for key, value in state.items():
        noise = torch.randn(value.shape, generator=generator) * 0.05
        state[key] = noise + 1 if value.dim() == 1 and key.endswith('.weight') else noise
    return state


@pytest.fixture(scope='session')
def official_vitt_checkpoint(tmp_path_factory) -> str:
    """Path of a ``{"model": state_dict}`` file laid out like the released ``efficient_sam_vitt.pt``."""
    path = tmp_path_factory.mktemp('official') / 'efficient_sam_vitt_random.pt'
    torch.save({'model': official_state_dict('ti')}, path)
    return str(path)
