"""The predictor under bad input and load: a float image with a NaN pixel is refused; many queries
are assembled into preallocated outputs (no list of chunks plus a concatenated copy)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import EFFICIENTSAM_TINY, REPO_ROOT

from efficientsam_plugins.build import build_efficient_sam
from efficientsam_plugins.predictor import EfficientSamPredictor, image_to_tensor


@pytest.fixture(scope='module')
def predictor():
    with open(os.path.join(EFFICIENTSAM_TINY, 'reference.json')) as f:
        config = json.load(f)['config']
    return EfficientSamPredictor(build_efficient_sam(config, os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt')),
                                 max_queries_per_batch=4)


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_float_image_with_a_non_finite_pixel_is_refused(predictor, bad):
    image = torch.rand(3, 40, 60)
    image[1, 7, 9] = bad
    with pytest.raises(ValueError, match='float image tensors must be finite: 1 of 7200 values are NaN or infinite'):
        image_to_tensor(image)
    with pytest.raises(ValueError, match='must be finite'):
        predictor.set_image(image)


@pytest.mark.parametrize('best_only, return_logits', [(False, False), (True, False), (False, True)])
def test_chunked_outputs_equal_one_batch(predictor, best_only, return_logits):
    rng = np.random.default_rng(0)
    predictor.set_image(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    corners = np.sort(rng.uniform(0, 1, (10, 2, 2)) * [64, 48], axis=1)
    boxes = corners.reshape(10, 4)
    chunked = predictor.predict(boxes=boxes, best_only=best_only, return_logits=return_logits)  # 4 + 4 + 2
    predictor.max_queries_per_batch = 64
    try:
        whole = predictor.predict(boxes=boxes, best_only=best_only, return_logits=return_logits)
    finally:
        predictor.max_queries_per_batch = 4
    for got, expected in zip(chunked, whole):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert chunked[0].shape[:2] == (10, 1 if best_only else 3)


PEAK_SCRIPT = r'''
import json, resource, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from efficientsam_plugins.build import build_efficient_sam
from efficientsam_plugins.predictor import EfficientSamPredictor
torch.set_num_threads(1)
config = json.load(open(sys.argv[2]))['config']
predictor = EfficientSamPredictor(build_efficient_sam(config, sys.argv[3]), max_queries_per_batch=8)
rng = np.random.default_rng(0)
predictor.set_image(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8))
corners = np.sort(rng.uniform(0, 1, (400, 2, 2)) * [640, 360], axis=1)
predictor.predict(boxes=corners[:8].reshape(8, 4))  # warm up: the model's buffers and one chunk
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
masks, iou, low_res = predictor.predict(boxes=corners.reshape(400, 4))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps(dict(grown=grown, output=masks.nbytes + iou.nbytes + low_res.nbytes)))
'''


def test_many_queries_hold_one_copy_of_the_outputs():
    """400 boxes in chunks of 8: the peak grows by the outputs and one chunk, not twice the outputs
    (the chunk list plus its concatenation did that)."""
    result = subprocess.run([sys.executable, '-c', PEAK_SCRIPT, REPO_ROOT, os.path.join(EFFICIENTSAM_TINY,
                             'reference.json'), os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt')],
                            capture_output=True, text=True, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured['grown'] < 1.3 * measured['output'], measured
