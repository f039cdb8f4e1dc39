"""SqueezeSAM: numerical parity with the official code (tests/data/squeezesam_tiny), the prompt
rendering, the options beyond the official model, and the predictor."""
import json
import os
import warnings

import numpy as np
import pytest
import torch
from conftest import EFFICIENTSAM_TINY, TEST_DATA
from PIL import Image

from efficientsam_plugins.build import build_predictor, build_squeeze_sam
from efficientsam_plugins.modeling.squeeze_sam.early_fusion import EarlyFusion, click_disks
from efficientsam_plugins.modeling.squeeze_sam.squeeze_sam import SqueezeSam
from efficientsam_plugins.predictor import SqueezeSamPredictor

SQUEEZESAM_TINY = os.path.join(TEST_DATA, 'squeezesam_tiny')
PROMPTS = ['two_points', 'box', 'box_and_point', 'negative_point_ignored', 'two_queries_padded']


def relative_l2(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


@pytest.fixture(scope='module')
def reference():
    with open(os.path.join(SQUEEZESAM_TINY, 'reference.json')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def outputs():
    with np.load(os.path.join(SQUEEZESAM_TINY, 'outputs.npz')) as data:
        return dict(data)


@pytest.fixture(scope='module')
def pixels():
    return np.array(Image.open(os.path.join(EFFICIENTSAM_TINY, 'dogs.png')))


@pytest.fixture(scope='module')
def image(pixels):
    return torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255


@pytest.fixture(scope='module')
def tiny(reference):
    return build_squeeze_sam(reference['config'], os.path.join(SQUEEZESAM_TINY, 'state_dict.pt'))


def prompt(reference, name):
    case = reference['prompts'][name]
    return (torch.tensor(case['batched_points'], dtype=torch.float32),
            torch.tensor(case['batched_point_labels'], dtype=torch.float32))


@pytest.mark.parametrize('name', PROMPTS)
def test_tiny_fused_channels_identical(tiny, reference, outputs, name):
    points, labels = prompt(reference, name)
    channels = tiny.early_fusion.prompt_channels(points, labels, 603, 1072).flatten(0, 1)
    expected = np.unpackbits(outputs[f'{name}_fused_channels_packed'], axis=-1, count=128).astype(bool)
    assert channels.shape == expected.shape
    assert np.array_equal(channels.numpy().astype(bool), expected)


@pytest.mark.parametrize('name', PROMPTS)
def test_tiny_outputs_equal_official(tiny, reference, outputs, image, name):
    points, labels = prompt(reference, name)
    with torch.no_grad():
        low_res, iou = tiny(image, points, labels, scale_to_original_image_size=False)
        full, full_iou = tiny(image, points, labels)
    assert relative_l2(low_res.flatten(0, 1), outputs[f'{name}_lowres_logits']) < 1e-4
    assert iou.shape == outputs[f'{name}_iou'].shape and relative_l2(iou, outputs[f'{name}_iou']) < 1e-4
    assert list(full.shape) == reference['prompts'][name]['fullres_shape'] and torch.equal(iou, full_iou)
    expected = np.unpackbits(outputs[f'{name}_fullres_masks_every4th_packed'], axis=-1, count=268).astype(bool)
    assert ((full[..., ::4, ::4].numpy() >= 0) == expected).mean() >= 0.999


def test_parameter_count_and_keys_equal_official(reference):
    base = build_squeeze_sam('base')
    assert sum(p.numel() for p in base.parameters()) == 10_159_260 and len(base.state_dict()) == 377
    tiny = build_squeeze_sam(reference['config'])
    assert sum(p.numel() for p in tiny.parameters()) == reference['num_parameters']
    state = torch.load(os.path.join(SQUEEZESAM_TINY, 'state_dict.pt'), weights_only=True)
    assert set(tiny.state_dict()) == set(state['model'])
    loaded = build_squeeze_sam(reference['config'], state)  # an already-loaded checkpoint dict
    torch.testing.assert_close(loaded.patch_embed.proj[0].weight, state['model']['patch_embed.proj.0.weight'])


def test_wrong_checkpoints_are_refused(reference, tmp_path):
    path = os.path.join(SQUEEZESAM_TINY, 'state_dict.pt')
    with pytest.raises(ValueError, match='shape mismatches'):
        build_squeeze_sam({**reference['config'], 'encoder_patch_embed_dim': 16}, path)
    with pytest.raises(ValueError, match='missing keys'):
        build_squeeze_sam(reference['config'], {'model': {'patch_embed.proj.0.weight': torch.zeros(8, 5, 2, 2)}})
    with pytest.raises(FileNotFoundError, match='checkpoint file not found'):
        build_squeeze_sam('base', str(tmp_path / 'nope.pt'))


def test_config_validation():
    with pytest.raises(ValueError, match='unknown SqueezeSAM config keys'):
        build_squeeze_sam({'encoder_dims': [8]})
    with pytest.raises(ValueError, match="unknown SqueezeSAM config 'large'"):
        build_squeeze_sam('large')
    with pytest.raises(ValueError, match='encoder_unet_conv_dims must be a non-empty list'):
        build_squeeze_sam({'encoder_unet_conv_dims': []})
    with pytest.raises(ValueError, match='negative_click_channel must be true or false'):
        build_squeeze_sam({'negative_click_channel': 1})
    with pytest.raises(ValueError, match='UNet levels'):
        build_squeeze_sam({'encoder_image_size': 64})
    with pytest.raises(ValueError, match='heads do not divide'):
        build_squeeze_sam({'encoder_image_size': 32, 'encoder_unet_conv_dims': [8, 12], 'decoder_num_heads': 4})


def dense_disks(points, selected, size, radius):
    """The definition, on the dense [B, Q, N, S, S] grid the official code builds."""
    grid = torch.arange(size, dtype=torch.float32)
    dist2 = ((grid[None, :] - points[..., 0, None, None]).square()
             + (grid[:, None] - points[..., 1, None, None]).square())
    return ((dist2 <= radius * radius) & selected[..., None, None]).any(dim=2)


def test_click_disks_equal_dense_definition():
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(2, 5, 7, 2, generator=generator) * 76 - 6  # fractional, some beyond the edges
    points[0, 0, :3] = torch.tensor([[0.0, 0.0], [63.0, 63.0], [64.0, 10.0]])  # corners and the far edge
    points[1, :, :2] = points[1, :, :2].round() + 0.5
    selected = torch.rand(2, 5, 7, generator=generator) > 0.3
    for radius in (5.0, 2.5, 1.0):
        assert torch.equal(click_disks(points, selected, 64, radius), dense_disks(points, selected, 64, radius))
    centred = click_disks(torch.tensor([[[[100.0, 200.0]]]]), torch.ones(1, 1, 1, dtype=torch.bool), 512, 5.0)
    assert int(centred.sum()) == 81  # lattice points of a radius-5 disk


def largest_allocation(fn) -> int:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(event.cpu_memory_usage for event in prof.events())


def test_prompt_rendering_memory_is_linear_in_queries():
    """No [Q, S, S, N] intermediate: the largest allocation is the float output itself."""
    fusion = EarlyFusion(512)
    points, labels = torch.rand(1, 8, 40, 2) * 500, torch.ones(1, 8, 40)
    labels[:, 1::2, 0] = 2  # half the queries are boxes
    largest = largest_allocation(lambda: fusion.prompt_channels(points, labels, 500, 500))
    assert largest <= 8 * 2 * 512 * 512 * 4  # [Q, 2, S, S] float32; the official code needs 40 x more per query


def test_negative_clicks_ignored_unless_the_model_has_their_channel():
    points = torch.tensor([[[[30.0, 40.0], [10.0, 90.0]]]])
    labels = torch.tensor([[[1.0, 0.0]]])
    official = EarlyFusion(64).prompt_channels(points, labels, 100, 100)
    assert torch.equal(official, EarlyFusion(64).prompt_channels(points[:, :, :1], labels[:, :, :1], 100, 100))
    extended = EarlyFusion(64, negative_click_channel=True).prompt_channels(points, labels, 100, 100)
    assert extended.shape == (1, 1, 3, 64, 64) and torch.equal(extended[:, :, :2], official)
    negative = extended[0, 0, 2].nonzero().float().mean(0)  # (row, col) of the negative disk
    torch.testing.assert_close(negative, torch.tensor([90 * 0.64, 10 * 0.64]), atol=0.5, rtol=0)
    # A leading negative click is no box corner once negatives mean something.
    first_negative = EarlyFusion(64, negative_click_channel=True).prompt_channels(
        points.flip(2), labels.flip(2), 100, 100)
    assert bool(first_negative[0, 0, 0].all())


def test_previous_mask_channel(reference, image):
    config = {**reference['config'], 'previous_mask_channel': True, 'negative_click_channel': True}
    model = build_squeeze_sam(config)
    assert model.patch_embed.proj[0].in_channels == 7
    points, labels = torch.tensor([[[[500.0, 300.0], [200.0, 100.0]]]]), torch.tensor([[[1.0, 0.0]]])
    previous = torch.full((1, 1, 64, 64), -1.0)
    previous[..., 10:30, 20:40] = 1.0
    channels = model.early_fusion.prompt_channels(points, labels, 603, 1072, previous)
    assert channels.shape == (1, 1, 4, 128, 128) and torch.equal(channels[0, 0, 3, 20:60, 40:80],
                                                                 torch.ones(40, 40))
    assert channels[0, 0, 3].sum() == 40 * 40
    with torch.no_grad():
        empty, _ = model(image, points, labels, previous_masks=None)
        refined, _ = model(image, points, labels, previous_masks=previous)
    assert empty.shape == refined.shape == (1, 1, 3, 603, 1072) and not torch.equal(empty, refined)
    with pytest.raises(ValueError, match='previous_masks must be'):
        model(image, points, labels, previous_masks=previous[0])
    with pytest.raises(ValueError, match='without previous_mask_channel'):
        build_squeeze_sam(reference['config'])(image, points, labels, previous_masks=previous)


@pytest.fixture(scope='module')
def predictor(tiny, pixels):
    predictor = SqueezeSamPredictor(tiny, max_queries_per_batch=2)
    predictor.set_image(pixels)
    return predictor


def test_predictor_matches_module_forward(predictor, tiny, image):
    boxes = [[400, 200, 800, 600], [100, 120, 500, 580], [0, 0, 1072, 603]]
    points = [[[580, 350]], [[300, 300]], [[10, 10]]]
    logits, iou, low_res = predictor.predict(points, boxes=boxes, return_logits=True)  # 3 queries, chunks of 2
    batched_points = torch.tensor([[[b[:2], b[2:], p[0]] for b, p in zip(boxes, points)]], dtype=torch.float32)
    labels = torch.tensor([[[2.0, 3.0, 1.0]] * 3])
    with torch.no_grad():
        expected, expected_iou = tiny(image, batched_points, labels)
        expected_low, _ = tiny(image, batched_points, labels, scale_to_original_image_size=False)
    assert logits.shape == (3, 3, 603, 1072) and low_res.shape == (3, 3, 64, 64) and iou.shape == (3, 3)
    # Chunks of 2 and one batch of 3 differ only by float32 summation order.
    assert relative_l2(low_res, expected_low[0]) < 1e-5 and relative_l2(iou, expected_iou[0]) < 1e-5
    assert relative_l2(logits, expected[0]) < 1e-5
    masks, _, _ = predictor.predict(points, boxes=boxes)
    assert masks.dtype == bool and (masks == (expected[0].numpy() >= 0)).mean() > 0.99999


def test_predictor_single_mask_is_the_best_candidate(predictor):
    masks, iou, low_res = predictor.predict([[580, 350], [650, 350]])
    single, single_iou, single_low = predictor.predict([[580, 350], [650, 350]], multimask_output=False)
    best = int(iou[0].argmax())
    assert single.shape == (1, 1, 603, 1072) and single_low.shape == (1, 1, 64, 64)
    assert np.array_equal(single[0, 0], masks[0, best]) and single_iou[0, 0] == pytest.approx(iou[0, best])


def test_predictor_validation_is_the_common_one(predictor, reference):
    with pytest.raises(ValueError, match=r'negative points \(0\) need a model built with the negative-click input'):
        predictor.predict([[580, 350], [300, 100]], point_labels=[1, 0])
    with pytest.raises(ValueError, match='outside the 1072x603 image'):
        predictor.predict([[2000, 10]])
    with pytest.raises(RuntimeError, match='call set_image'):
        SqueezeSamPredictor(build_squeeze_sam(reference['config'])).predict([[1, 1]])
    negative = SqueezeSamPredictor(build_squeeze_sam({**reference['config'], 'negative_click_channel': True}))
    assert negative.supports_negative_points and not predictor.supports_negative_points
    negative.set_image(torch.rand(3, 60, 80))
    masks, iou, _ = negative.predict([[20, 30], [50, 10]], point_labels=[1, 0])
    assert masks.shape == (1, 3, 60, 80) and iou.shape == (1, 3)


def test_build_predictor_names(reference, tmp_path, monkeypatch):
    path = os.path.join(SQUEEZESAM_TINY, 'state_dict.pt')
    predictor = build_predictor(reference['config'], path, max_queries_per_batch=3)
    assert isinstance(predictor, SqueezeSamPredictor)
    assert predictor.max_queries_per_batch == 3 and predictor.model.img_size == 128
    random = build_predictor('squeezesam')  # the architecture name alone: random weights
    assert isinstance(random.model, SqueezeSam) and random.model.img_size == 512
    # A zoo entry (the zoo has none built in: the weights were never public) carries its architecture.
    checkpoint = tmp_path / 'squeeze_sam.pt'
    torch.save({'model': random.model.state_dict()}, checkpoint)
    manifest = tmp_path / 'manifest.json'
    manifest.write_text(json.dumps([{'name': 'my_squeezesam', 'filename': 'squeeze_sam.pt',
                                     'urls': [checkpoint.as_uri()], 'arch': {'family': 'squeezesam',
                                                                             'config': 'base'}}]))
    monkeypatch.setenv('EFFICIENTSAM_ZOO_MANIFEST', str(manifest))
    monkeypatch.setenv('EFFICIENTSAM_HOME', str(tmp_path / 'cache'))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        from_zoo = build_predictor('my_squeezesam')
    torch.testing.assert_close(from_zoo.model.state_dict(), random.model.state_dict())
