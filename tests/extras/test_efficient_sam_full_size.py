"""Extra parity case: the full-size ViT-T of ../shared/reference/efficientsam (41 MB, not in the repository)."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED

from efficientsam_plugins.build import build_efficient_sam

REFERENCE = os.path.join(SHARED, 'reference', 'efficientsam')


def relative_l2(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


@pytest.fixture(scope='module')
def random_vitt():
    pixels = np.load(os.path.join(REFERENCE, 'input_dogs_uint8_HWC.npy'))
    image = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255
    model = build_efficient_sam('ti', os.path.join(REFERENCE, 'random_vitt_state_dict.pt'))
    with torch.no_grad():
        embeddings = model.get_image_embeddings(image)
    with open(os.path.join(REFERENCE, 'prompts.json')) as f:
        prompts = json.load(f)
    return model, image, embeddings, prompts


@pytest.mark.parametrize('prompt', ['point', 'box', 'two_boxes'])
def test_full_size_vitt_outputs(random_vitt, prompt):
    model, image, embeddings, prompts = random_vitt
    points = torch.tensor(prompts[prompt]['batched_points'], dtype=torch.float32)
    labels = torch.tensor(prompts[prompt]['batched_point_labels'], dtype=torch.float32)
    with torch.no_grad():
        logits, iou = model.predict_masks(embeddings, points, labels, True, *image.shape[2:])
    expected_logits = np.load(os.path.join(REFERENCE, f'random_vitt_{prompt}_lowres_logits.npy'))
    assert logits.shape == expected_logits.shape == (1, points.shape[1], 3, 256, 256)
    assert relative_l2(logits, expected_logits) < 1e-4
    assert relative_l2(iou, np.load(os.path.join(REFERENCE, f'random_vitt_{prompt}_iou.npy'))) < 1e-4
    if prompt == 'point':
        masks = F.interpolate(logits[0], image.shape[2:], mode='bicubic')[None] >= 0
        expected_masks = np.load(os.path.join(REFERENCE, 'random_vitt_point_fullres_masks.npy'))
        assert (masks.numpy() == expected_masks).mean() >= 0.999


def test_tiny_full_resolution_logits_complete():
    """The in-repository fixture keeps every 4th pixel of these logits; here all of them."""
    with open(os.path.join(REFERENCE, 'tiny_reference.json')) as f:
        reference = json.load(f)
    model = build_efficient_sam(reference['config'], os.path.join(REFERENCE, 'tiny_state_dict.pt'))
    image = torch.from_numpy(np.load(os.path.join(REFERENCE, 'input_dogs_uint8_HWC.npy'))).permute(2, 0, 1)
    case = reference['outputs']['point']
    with torch.no_grad():
        logits, _ = model(image.float()[None] / 255, torch.tensor(case['points']), torch.tensor(case['labels']))
    expected = np.load(os.path.join(REFERENCE, 'tiny_point_fullres_logits_f16.npy')).astype(np.float32)
    assert relative_l2(logits, expected) < 1e-3
    assert ((logits.numpy() >= 0) == (expected >= 0)).mean() >= 0.999


def test_released_layout_file_loads_strictly():
    state = torch.load(os.path.join(REFERENCE, 'random_vitt_state_dict.pt'), weights_only=True)['model']
    assert set(build_efficient_sam('ti').state_dict()) == set(state)
    model = build_efficient_sam('ti', {'model': state})
    torch.testing.assert_close(model.image_encoder.pos_embed, state['image_encoder.pos_embed'])
