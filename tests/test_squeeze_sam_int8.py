"""Int8 SqueezeSAM (PT2E, x86 inductor quantizer): the BatchNorm fold is exact, and the converted
model runs behind the predictor and agrees with fp32 (tiny configuration; the reference-quantized
graph, so no C++ compilation; tools/benchmark.py measures the compiled speed)."""
import copy
import json
import os
import warnings

import numpy as np
import pytest
import torch
from conftest import COCO_MINI, EFFICIENTSAM_TINY, TEST_DATA
from PIL import Image

pytest.importorskip('torchao', reason='int8 SqueezeSAM needs torchao')

from efficientsam_plugins.build import build_squeeze_sam
from efficientsam_plugins.deploy.quantize import (  # noqa: E402
    ChannelShift,
    FusedInputNetwork,
    calibration_inputs,
    fold_batchnorm,
    quantize_int8,
    random_prompts,
    recalibrate_batchnorm,
)
from efficientsam_plugins.predictor import SqueezeSamPredictor  # noqa: E402

SQUEEZESAM_TINY = os.path.join(TEST_DATA, 'squeezesam_tiny')


def load_image(path):
    return torch.from_numpy(np.array(Image.open(path).convert('RGB'))).permute(2, 0, 1).float() / 255


@pytest.fixture(scope='module')
def images():
    """Two COCO images to calibrate on, then dogs.png and two more to compare on."""
    folder = os.path.join(COCO_MINI, 'val2017')
    coco = [load_image(os.path.join(folder, name)) for name in sorted(os.listdir(folder))]
    return coco[:2], [load_image(os.path.join(EFFICIENTSAM_TINY, 'dogs.png'))] + coco[6:]


@pytest.fixture(scope='module')
def tiny(images):
    """The tiny configuration with random weights and BatchNorm statistics of real images (a stand-in
    for trained weights, which were never published: the parity fixture's N(0, 0.2) weights give
    logits in the hundreds and all-on masks, which no quantization error could change)."""
    with open(os.path.join(SQUEEZESAM_TINY, 'reference.json')) as f:
        config = json.load(f)['config']
    torch.manual_seed(0)
    model = build_squeeze_sam(config)
    return recalibrate_batchnorm(model, calibration_inputs(model, images[0]))


@pytest.fixture(scope='module')
def int8(tiny, images):
    """7-bit activations whatever this CPU: what the compiled model computes where VNNI is missing
    (the lower agreement of the two), so the floor below holds on every machine."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # torchao's own imports
        return quantize_int8(tiny, calibration_inputs(tiny, images[0], seed=1), compile=False, reduce_range=True)


def test_batchnorm_fold_is_exact(tiny, images):
    folded, count, kept = fold_batchnorm(tiny)
    assert count == 22 and kept == 0  # 5 encoder levels x 2 convs, 4 decoder steps x (upsampler + 2 convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, ChannelShift) for m in folded.modules()) == count
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in tiny.modules())  # the original is untouched
    fused = calibration_inputs(tiny, images[1][:1], queries_per_image=3)[0]
    with torch.no_grad():
        expected, folded_out = FusedInputNetwork(tiny)(fused), FusedInputNetwork(folded)(fused)
    for a, b in zip(folded_out, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    negative = copy.deepcopy(tiny)  # a negative BatchNorm scale cannot pass the ReLU: kept
    first = negative.unet_encoder.down_layers[0].double_conv[0]
    with torch.no_grad():
        first.norm.weight[0] = -1.0
    assert fold_batchnorm(negative)[1:] == (count - 1, 1)


def test_random_prompts_stay_inside_the_image():
    points, labels = random_prompts(60, 80, 6, torch.Generator().manual_seed(0))
    assert points.shape == (6, 3, 2) and labels.shape == (6, 3)
    assert torch.equal(labels[0::2, :2], torch.tensor([[2.0, 3.0]] * 3))
    valid = labels >= 0
    assert ((points[..., 0] <= 80) & (points[..., 1] <= 60))[valid].all() and (points[valid] >= 0).all()


def mask_ious(a, b):
    a, b = a.flatten(1), b.flatten(1)
    return (a & b).sum(1) / (a | b).sum(1).clamp(min=1)


def test_int8_agrees_with_fp32_behind_the_predictor(tiny, int8, images):
    fp32, quantized = SqueezeSamPredictor(tiny, 4), SqueezeSamPredictor(int8, 4)
    generator = torch.Generator().manual_seed(1)
    ious, coverage, score_errors = [], [], []
    for image in images[1]:  # not calibrated on
        h, w = image.shape[-2:]
        points, labels = random_prompts(h, w, 4, generator)
        boxes = torch.cat([points[0::2, 0], points[0::2, 1]], dim=1)
        fp32.set_image(image)
        quantized.set_image(image)
        for kwargs in (dict(boxes=boxes), dict(points=points[1::2, :1])):
            expected, expected_iou, _ = fp32.predict_torch(**kwargs)
            masks, iou, _ = quantized.predict_torch(**kwargs)
            assert masks.shape == expected.shape and masks.dtype == torch.bool
            ious.append(mask_ious(masks.flatten(0, 1), expected.flatten(0, 1)))
            coverage.append(expected.flatten(1).float().mean(1))
            score_errors.append((iou - expected_iou).abs().flatten())
    ious, coverage = torch.cat(ious), torch.cat(coverage)
    assert len(ious) == 3 * 4 * 3 and 0.2 < float(coverage.mean()) < 0.8  # masks neither all on nor all off
    print(f'int8 vs fp32: mean mask IoU {float(ious.mean()):.3f}, min {float(ious.min()):.3f}')
    assert float(ious.mean()) >= 0.65 and float(torch.cat(score_errors).max()) < 0.1
