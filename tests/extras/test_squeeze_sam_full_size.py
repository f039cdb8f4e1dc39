"""Extra parity cases: the official ``build_squeeze_sam_base`` (10.2M parameters, 41 MB of weights,
not in the repository) and the complete full-resolution masks of ../shared/reference/squeezesam."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED

from efficientsam_plugins.build import build_squeeze_sam

REFERENCE = os.path.join(SHARED, 'reference', 'squeezesam')
PROMPTS = ['two_points', 'box', 'box_and_point', 'negative_point_ignored', 'two_queries_padded']


def relative_l2(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


@pytest.fixture(scope='module')
def reference():
    with open(os.path.join(REFERENCE, 'reference.json')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def image():
    pixels = np.load(os.path.join(SHARED, 'reference', 'efficientsam', 'input_dogs_uint8_HWC.npy'))
    return torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255


@pytest.fixture(scope='module')
def models(reference):
    return {name: build_squeeze_sam(reference['configs'][name]['config'],
                                    os.path.join(REFERENCE, f'{name}_state_dict.pt')) for name in ('tiny', 'full')}


@pytest.mark.parametrize('config', ['full', 'tiny'])
@pytest.mark.parametrize('prompt', PROMPTS)
def test_outputs_equal_official(models, reference, image, config, prompt):
    model = models[config]
    case = reference['prompts'][prompt]
    points = torch.tensor(case['batched_points'], dtype=torch.float32)
    labels = torch.tensor(case['batched_point_labels'], dtype=torch.float32)
    expected = {kind: np.load(os.path.join(REFERENCE, f'{config}_{prompt}_{kind}.npy'))
                for kind in ('fused_channels', 'lowres_logits', 'iou', 'fullres_masks_packed')}
    h, w = image.shape[2:]
    channels = model.early_fusion.prompt_channels(points, labels, h, w).flatten(0, 1)
    assert np.array_equal(channels.numpy().astype(np.uint8), expected['fused_channels'])
    with torch.no_grad():
        low_res, iou = model(image, points, labels, scale_to_original_image_size=False)
    assert relative_l2(low_res.flatten(0, 1), expected['lowres_logits']) < 1e-4
    assert relative_l2(iou, expected['iou']) < 1e-4
    masks = F.interpolate(low_res.flatten(0, 1), (h, w), mode='bicubic').view(*low_res.shape[:3], h, w) >= 0
    expected_masks = np.unpackbits(expected['fullres_masks_packed'], axis=-1, count=w).astype(bool)
    assert (masks.numpy() == expected_masks).mean() >= 0.999


def test_official_file_loads_strictly(models, reference):
    state = torch.load(os.path.join(REFERENCE, 'full_state_dict.pt'), weights_only=True)['model']
    assert len(state) == reference['configs']['full']['num_state_dict_keys'] == 377
    assert set(build_squeeze_sam('base').state_dict()) == set(state)
    assert sum(p.numel() for p in models['full'].parameters()) == reference['configs']['full']['num_parameters']
