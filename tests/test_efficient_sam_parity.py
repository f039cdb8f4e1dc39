"""Numerical parity with the official EfficientSAM code (outputs in ../shared/reference/efficientsam)."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from efficientsam_plugins.models.efficient_sam import build_efficient_sam


def relative_l2(actual, expected):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


@pytest.fixture(scope='module')
def image(reference_dir):
    pixels = np.load(os.path.join(reference_dir, 'input_dogs_uint8_HWC.npy'))
    return torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255


@pytest.fixture(scope='module')
def tiny(reference_dir):
    with open(os.path.join(reference_dir, 'tiny_reference.json')) as f:
        reference = json.load(f)
    model = build_efficient_sam(reference['config'], os.path.join(reference_dir, 'tiny_state_dict.pt'))
    return model, reference


def test_tiny_image_embeddings(tiny, image, reference_dir):
    model, reference = tiny
    with torch.no_grad():
        embeddings = model.get_image_embeddings(image)
    assert list(embeddings.shape) == reference['embedding_shape']
    assert relative_l2(embeddings, np.load(os.path.join(reference_dir, 'tiny_image_embeddings.npy'))) < 1e-4


@pytest.mark.parametrize('prompt', ['point', 'box', 'two_boxes', 'seven_points_truncated_to_6'])
@pytest.mark.parametrize('multimask', [True, False])
def test_tiny_decoder_outputs(tiny, image, reference_dir, prompt, multimask):
    model, reference = tiny
    case = reference['outputs'][prompt]
    points, labels = torch.tensor(case['points']), torch.tensor(case['labels'])
    with torch.no_grad():
        embeddings = model.get_image_embeddings(image)
        logits, iou = model.predict_masks(embeddings, points, labels, multimask, *image.shape[2:])
    suffix = '' if multimask else 'single_'
    mask_suffix = '' if multimask else 'single_mask_'
    expected_logits = np.load(os.path.join(reference_dir, f'tiny_{prompt}_{mask_suffix}lowres_logits.npy'))
    expected_iou = np.load(os.path.join(reference_dir, f'tiny_{prompt}_{suffix}iou.npy'))
    assert logits.shape == expected_logits.shape
    assert relative_l2(logits, expected_logits) < 1e-4
    assert relative_l2(iou, expected_iou) < 1e-4


def test_tiny_full_resolution_logits(tiny, image, reference_dir):
    model, reference = tiny
    case = reference['outputs']['point']
    with torch.no_grad():
        logits, _ = model(image, torch.tensor(case['points']), torch.tensor(case['labels']))
    expected = np.load(os.path.join(reference_dir, 'tiny_point_fullres_logits_f16.npy')).astype(np.float32)
    assert list(logits.shape) == case['full_shape']
    assert relative_l2(logits, expected) < 1e-3  # the reference is stored in float16
    assert ((logits.numpy() >= 0) == (expected >= 0)).mean() >= 0.999


@pytest.fixture(scope='module')
def random_vitt(reference_dir, image):
    model = build_efficient_sam('ti', os.path.join(reference_dir, 'random_vitt_state_dict.pt'))
    with torch.no_grad():
        embeddings = model.get_image_embeddings(image)
    with open(os.path.join(reference_dir, 'prompts.json')) as f:
        prompts = json.load(f)
    return model, embeddings, prompts


@pytest.mark.parametrize('prompt', ['point', 'box', 'two_boxes'])
def test_full_size_vitt_outputs(random_vitt, image, reference_dir, prompt):
    model, embeddings, prompts = random_vitt
    points = torch.tensor(prompts[prompt]['batched_points'], dtype=torch.float32)
    labels = torch.tensor(prompts[prompt]['batched_point_labels'], dtype=torch.float32)
    with torch.no_grad():
        logits, iou = model.predict_masks(embeddings, points, labels, True, *image.shape[2:])
    expected_logits = np.load(os.path.join(reference_dir, f'random_vitt_{prompt}_lowres_logits.npy'))
    assert logits.shape == expected_logits.shape == (1, points.shape[1], 3, 256, 256)
    assert relative_l2(logits, expected_logits) < 1e-4
    assert relative_l2(iou, np.load(os.path.join(reference_dir, f'random_vitt_{prompt}_iou.npy'))) < 1e-4
    if prompt == 'point':
        masks = F.interpolate(logits[0], image.shape[2:], mode='bicubic')[None] >= 0
        expected_masks = np.load(os.path.join(reference_dir, 'random_vitt_point_fullres_masks.npy'))
        assert (masks.numpy() == expected_masks).mean() >= 0.999


@pytest.mark.parametrize('config,count', [('ti', 10_223_204), ('s', 26_413_028)])
def test_parameter_counts_equal_official(config, count):
    model = build_efficient_sam(config)
    assert sum(p.numel() for p in model.parameters()) == count


def test_checkpoint_keys_need_no_renaming(reference_dir):
    state = torch.load(os.path.join(reference_dir, 'random_vitt_state_dict.pt'), weights_only=True)['model']
    assert set(build_efficient_sam('ti').state_dict()) == set(state)
    model = build_efficient_sam('ti', {'model': state})
    torch.testing.assert_close(model.image_encoder.pos_embed, state['image_encoder.pos_embed'])


def test_wrong_architecture_checkpoint_is_refused(reference_dir):
    with pytest.raises(ValueError, match='shape mismatches'):
        build_efficient_sam('s', os.path.join(reference_dir, 'random_vitt_state_dict.pt'))


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        build_efficient_sam('ti', str(tmp_path / 'nope.pt'))
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='cannot read checkpoint'):
        build_efficient_sam('ti', str(corrupt))
    partial = {'model': {'image_encoder.pos_embed': torch.zeros(1, 197, 192)}}
    with pytest.raises(ValueError, match='missing keys'):
        build_efficient_sam('ti', partial)


def test_config_validation():
    with pytest.raises(ValueError, match='unknown EfficientSAM config keys'):
        build_efficient_sam({'embed_dims': 32})
    with pytest.raises(ValueError, match='unknown EfficientSAM config'):
        build_efficient_sam('b')


def test_reassociated_attention_equals_projected_attention():
    """The few-tokens path (used for batched queries at full size) equals plain attention."""
    from efficientsam_plugins.models.efficient_sam.transformer import TwoWayAttention
    torch.manual_seed(0)
    attention = TwoWayAttention(256, 8, downsample_rate=2)
    torch.nn.init.normal_(attention.k_proj.bias)
    torch.nn.init.normal_(attention.v_proj.bias)
    q, k, v = torch.randn(1, 3, 11, 256), torch.randn(1, 3, 300, 256), torch.randn(1, 3, 300, 256)
    fast = attention(q, k, v)
    heads = lambda x: x.view(3, -1, 8, 16).transpose(1, 2)  # noqa: E731
    weights = (heads(attention.q_proj(q)) @ heads(attention.k_proj(k)).transpose(-1, -2) / 4).softmax(-1)
    plain = attention.out_proj((weights @ heads(attention.v_proj(v))).transpose(1, 2).reshape(1, 3, 11, 128))
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
