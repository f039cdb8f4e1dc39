"""Numerical parity with the official EfficientSAM code.

The tiny configuration's reference (tests/data/efficientsam_tiny) pins the architecture, the checkpoint
layout, pre-/post-processing and prompt handling; tests/extras repeats it for the full-size ViT-T.
"""
import json
import os

import numpy as np
import pytest
import torch
from conftest import EFFICIENTSAM_TINY, TEST_DATA
from PIL import Image

from efficientsam_plugins.build import build_efficient_sam


def relative_l2(actual, expected):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


def reference_file(name):
    return os.path.join(EFFICIENTSAM_TINY, name)


@pytest.fixture(scope='module')
def image():
    pixels = np.array(Image.open(reference_file('dogs.png')))
    return torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255


@pytest.fixture(scope='module')
def tiny():
    with open(reference_file('reference.json')) as f:
        reference = json.load(f)
    model = build_efficient_sam(reference['config'], reference_file('state_dict.pt'))
    return model, reference


def test_tiny_image_embeddings(tiny, image):
    model, reference = tiny
    with torch.no_grad():
        embeddings = model.get_image_embeddings(image)
    assert list(embeddings.shape) == reference['embedding_shape']
    assert relative_l2(embeddings, np.load(reference_file('image_embeddings.npy'))) < 1e-4


@pytest.mark.parametrize('prompt', ['point', 'box', 'two_boxes', 'seven_points_truncated_to_6'])
@pytest.mark.parametrize('multimask', [True, False])
def test_tiny_decoder_outputs(tiny, image, prompt, multimask):
    model, reference = tiny
    case = reference['outputs'][prompt]
    points, labels = torch.tensor(case['points']), torch.tensor(case['labels'])
    with torch.no_grad():
        embeddings = model.get_image_embeddings(image)
        logits, iou = model.predict_masks(embeddings, points, labels, multimask, *image.shape[2:])
    suffix = '' if multimask else 'single_'
    mask_suffix = '' if multimask else 'single_mask_'
    expected_logits = np.load(reference_file(f'{prompt}_{mask_suffix}lowres_logits.npy'))
    expected_iou = np.load(reference_file(f'{prompt}_{suffix}iou.npy'))
    assert logits.shape == expected_logits.shape
    assert relative_l2(logits, expected_logits) < 1e-4
    assert relative_l2(iou, expected_iou) < 1e-4


def test_tiny_full_resolution_logits(tiny, image):
    model, reference = tiny
    case = reference['outputs']['point']
    with torch.no_grad():
        logits, _ = model(image, torch.tensor(case['points']), torch.tensor(case['labels']))
    assert list(logits.shape) == case['full_shape']
    expected_masks = np.unpackbits(np.load(reference_file('point_fullres_masks_packed.npy')), axis=-1,
                                   count=logits.shape[-1]).astype(bool)
    assert ((logits.numpy() >= 0) == expected_masks).mean() >= 0.999
    expected = np.load(reference_file('point_fullres_logits_f16_every4th.npy')).astype(np.float32)
    assert relative_l2(logits[..., ::4, ::4], expected) < 1e-3  # the reference is stored in float16


@pytest.mark.parametrize('config,count', [('ti', 10_223_204), ('s', 26_413_028)])
def test_parameter_counts_equal_official(config, count):
    model = build_efficient_sam(config)
    assert sum(p.numel() for p in model.parameters()) == count


def test_checkpoint_keys_need_no_renaming():
    state = torch.load(reference_file('state_dict.pt'), weights_only=True)['model']
    with open(reference_file('reference.json')) as f:
        config = json.load(f)['config']
    assert set(build_efficient_sam(config).state_dict()) == set(state)
    model = build_efficient_sam(config, {'model': state})
    torch.testing.assert_close(model.image_encoder.pos_embed, state['image_encoder.pos_embed'])


def test_released_vitt_layout_loads_without_renaming():
    """Keys and shapes of the released ``efficient_sam_vitt.pt`` (recorded from the shared reference)."""
    with open(os.path.join(TEST_DATA, 'efficient_sam_vitt_shapes.json')) as f:
        released = json.load(f)
    ours = {key: list(value.shape) for key, value in build_efficient_sam('ti').state_dict().items()}
    assert len(released) == 278 and ours == released


def test_wrong_architecture_checkpoint_is_refused(official_vitt_checkpoint):
    with pytest.raises(ValueError, match='shape mismatches'):
        build_efficient_sam('s', official_vitt_checkpoint)


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
    from efficientsam_plugins.modeling.transformer import TwoWayAttention
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
