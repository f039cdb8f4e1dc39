import numpy as np
import pytest
import torch
from PIL import Image

from efficientsam_plugins.build import build_efficient_sam, build_predictor
from efficientsam_plugins.predictor import EfficientSamPredictor, Predictor

TINY = dict(img_size=256, embed_dim=32, depth=2, num_heads=2, neck_dims=[32, 32], dec_depth=2,
            dec_heads=2, dec_mlp_dim=64, upscaling=[16, 8], iou_head_hidden_dim=32)


@pytest.fixture(scope='module')
def predictor():
    torch.manual_seed(0)
    model = build_efficient_sam(TINY)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    pred = EfficientSamPredictor(model, max_queries_per_batch=3)
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    pred.set_image(image)
    return pred, image


class FakePredictor(Predictor):
    """A backend without a model: each query's logits are a ramp set by its prompts, so every output
    can be predicted; it records the size of each decoded chunk."""

    max_points_per_query = 6

    def __init__(self, max_queries_per_batch=64):
        super().__init__(max_queries_per_batch)
        self.chunks = []

    def _set_image(self, image):
        self.pixels = image

    def _decode(self, points, labels, multimask_output):
        self.chunks.append((tuple(points.shape), labels.tolist()))
        offsets = torch.arange(3 if multimask_output else 1, dtype=torch.float32)
        ramp = torch.linspace(-1, 1, 16)
        logits = points[:, 0, 0, None, None, None] / 100 + offsets[:, None, None] - ramp - 1
        iou = torch.cos(points.sum((1, 2))[:, None] + offsets)
        return logits.expand(-1, -1, 16, -1), iou


@pytest.fixture(params=['efficientsam', 'fake'])
def any_predictor(request, predictor):
    if request.param == 'efficientsam':
        return predictor
    pred = FakePredictor()
    pred.set_image(predictor[1])
    return pred, predictor[1]


def test_shapes_and_order(predictor):
    pred, _ = predictor
    masks, iou, low_res = pred.predict(boxes=[[10, 10, 100, 80], [50, 20, 190, 110]])
    assert masks.shape == (2, 3, 120, 200) and masks.dtype == bool
    assert iou.shape == (2, 3) and low_res.shape == (2, 3, 64, 64)
    single, single_iou, _ = pred.predict(points=[[30, 40]], multimask_output=False)
    assert single.shape == (1, 1, 120, 200) and single_iou.shape == (1, 1)


def test_batched_queries_equal_one_by_one(predictor):
    pred, _ = predictor
    boxes = np.array([[10, 10, 100, 80], [50, 20, 190, 110], [0, 0, 200, 120], [5, 60, 70, 119],
                      [120, 5, 160, 50]], dtype=np.float32)
    _, iou, low_res = pred.predict(boxes=boxes)
    for i, box in enumerate(boxes):
        _, one_iou, one_low_res = pred.predict(boxes=box)
        np.testing.assert_allclose(one_low_res[0], low_res[i], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(one_iou[0], iou[i], rtol=1e-4, atol=1e-5)


def test_points_plus_boxes_match_model_call(predictor):
    pred, image = predictor
    _, iou, low_res = pred.predict(points=[[[40, 50]], [[150, 60]]], boxes=[[10, 10, 100, 80], [120, 20, 190, 110]])
    points = torch.tensor([[[[10, 10], [100, 80], [40, 50]], [[120, 20], [190, 110], [150, 60]]]], dtype=torch.float32)
    labels = torch.tensor([[[2, 3, 1], [2, 3, 1]]], dtype=torch.float32)
    with torch.no_grad():
        logits, ref_iou = pred.model(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, points,
                                     labels, scale_to_original_image_size=False)
    np.testing.assert_allclose(low_res, logits[0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(iou, ref_iou[0].numpy(), rtol=1e-4, atol=1e-5)


def test_image_types_agree(predictor):
    pred, image = predictor
    reference = pred.image_embedding.clone()
    for variant in (Image.fromarray(image), torch.from_numpy(image), torch.from_numpy(image).permute(2, 0, 1),
                    torch.from_numpy(image).permute(2, 0, 1).float() / 255):
        pred.set_image(variant)
        torch.testing.assert_close(pred.image_embedding, reference)
    assert pred.original_size == (120, 200)


@pytest.mark.parametrize('image,match', [
    (np.zeros((10, 10, 3), np.float32), 'uint8'),
    (np.zeros((10, 10), np.uint8), 'HxWx3'),
    (np.zeros((10, 10, 4), np.uint8), 'HxWx3'),
    (torch.zeros(4, 10, 10), r'\[3, H, W\]'),
    (torch.full((3, 10, 10), 2.0), r'in \[0, 1\]'),
    ('image.png', 'unsupported image type'),
])
def test_bad_images(image, match):
    pred = EfficientSamPredictor(build_efficient_sam(TINY))
    with pytest.raises(ValueError, match=match):
        pred.set_image(image)


@pytest.mark.parametrize('kwargs,match', [
    (dict(), 'no prompt given'),
    (dict(points=[[500, 10]]), 'outside the 200x120 image'),
    (dict(boxes=[[-5, 0, 10, 10]]), 'outside the 200x120 image'),
    (dict(boxes=[[50, 50, 10, 10]]), 'x2 >= x1'),
    (dict(points=[[1, 1]] * 7), 'at most 6'),
    (dict(points=[[1, 1]] * 5, boxes=[0, 0, 10, 10]), 'at most 6'),
    (dict(points=[[1, 1], [2, 2]], point_labels=[1, 0]), 'negative points .0. need a model built'),
    (dict(points=[[1, 1]], point_labels=[1, 1]), 'to match points'),
    (dict(points=np.zeros((2, 3))), r'\[N, 2\]'),
    (dict(points=np.zeros((0, 2))), 'N >= 1'),
    (dict(boxes=[[0, 0, 1]]), r'\(x1, y1, x2, y2\)'),
    (dict(points=[[float('nan'), 1]]), 'NaN'),
    (dict(point_labels=[1]), 'without points'),
    (dict(points=[[[1, 1]], [[2, 2]], [[3, 3]]], boxes=[[0, 0, 5, 5], [0, 0, 6, 6]]), 'one point set per box'),
])
def test_bad_prompts(any_predictor, kwargs, match):
    pred, _ = any_predictor
    with pytest.raises(ValueError, match=match):
        pred.predict(**kwargs)


def test_predict_before_set_image():
    for pred in (EfficientSamPredictor(build_efficient_sam(TINY)), FakePredictor()):
        with pytest.raises(RuntimeError, match='set_image'):
            pred.predict(points=[[1, 1]])


def test_image_embedding_is_not_tiled_per_query(predictor, monkeypatch):
    pred, _ = predictor
    seen = []
    original = pred.model.mask_decoder.transformer.forward

    def spy(image_embedding, image_pe, point_embedding, *args):
        seen.append((image_embedding.shape[0], point_embedding.shape[:2]))
        return original(image_embedding, image_pe, point_embedding, *args)

    monkeypatch.setattr(pred.model.mask_decoder.transformer, 'forward', spy)
    pred.predict(boxes=[[0, 0, 10, 10]] * 3)
    assert seen == [(1, torch.Size([1, 3]))]


def test_build_predictor_loads_official_layout(official_vitt_checkpoint):
    pred = build_predictor('ti', official_vitt_checkpoint)
    assert isinstance(pred, EfficientSamPredictor) and not pred.model.training


@pytest.mark.parametrize('kwargs,match', [
    (dict(points=[['a', 'b']]), 'points must hold numbers'),
    (dict(points=[[1, 2], [3]]), 'points must be a rectangular array'),
    (dict(points=[[None, 1]]), 'points must hold numbers'),
    (dict(points='10 20'), 'points must hold numbers'),
    (dict(points=[[1, 1]], point_labels=['yes']), 'point_labels must hold numbers'),
    (dict(boxes=[[0, 0, 'x', 10]]), 'boxes must hold numbers'),
    (dict(boxes=[[0, 0, 5, 5], [1, 1, 9]]), 'boxes must be a rectangular array'),
    (dict(boxes={'x1': 0}), 'boxes must hold numbers'),
])
def test_non_numeric_prompts_name_the_argument(any_predictor, kwargs, match):
    pred, _ = any_predictor
    with pytest.raises(ValueError, match=match):
        pred.predict(**kwargs)


def test_backend_gets_parsed_prompts_in_chunks(any_predictor, monkeypatch):
    """Chunks of max_queries_per_batch give what one call gives; boxes reach the backend as corners
    labelled 2/3 before the points, in pixels of the original image."""
    pred, image = any_predictor
    boxes = np.array([[10, 10, 100, 80], [50, 20, 190, 110], [0, 0, 200, 120], [5, 60, 70, 119],
                      [120, 5, 160, 50]], dtype=np.float32)
    points = np.array([[[30, 40]], [[60, 30]], [[5, 5]], [[20, 100]], [[150, 20]]], dtype=np.float32)
    monkeypatch.setattr(pred, 'max_queries_per_batch', 64)
    masks, iou, low_res = pred.predict(points=points, boxes=boxes)
    monkeypatch.setattr(pred, 'max_queries_per_batch', 2)
    chunked = pred.predict(points=points, boxes=boxes)
    np.testing.assert_allclose(chunked[2], low_res, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(chunked[1], iou, rtol=1e-4, atol=1e-5)
    assert (chunked[0] != masks).mean() < 1e-3
    if isinstance(pred, FakePredictor):
        assert [shape for shape, _ in pred.chunks] == [(5, 3, 2), (2, 3, 2), (2, 3, 2), (1, 3, 2)]
        assert pred.chunks[0][1] == [[2.0, 3.0, 1.0]] * 5
        expected = boxes[:, 0, None, None] / 100 + np.arange(3)[None, :, None] - np.linspace(-1, 1, 16) - 1
        np.testing.assert_allclose(low_res[:, :, 0], expected, rtol=1e-6, atol=1e-6)
    assert not hasattr(Predictor, 'image_embedding')


def test_best_only_and_logits(any_predictor):
    pred, _ = any_predictor
    boxes = [[10, 10, 100, 80], [50, 20, 190, 110], [0, 0, 200, 120]]
    masks, iou, low_res = pred.predict(boxes=boxes)
    best = iou.argmax(1)
    rows = np.arange(len(boxes))
    best_masks, best_iou, best_low_res = pred.predict(boxes=boxes, best_only=True)
    assert best_masks.shape == (3, 1, 120, 200) and best_iou.shape == (3, 1)
    np.testing.assert_array_equal(best_masks[:, 0], masks[rows, best])
    np.testing.assert_array_equal(best_iou[:, 0], iou[rows, best])
    np.testing.assert_array_equal(best_low_res[:, 0], low_res[rows, best])
    logits, _, _ = pred.predict(boxes=boxes, return_logits=True)
    assert logits.dtype == np.float32 and logits.shape == masks.shape
    np.testing.assert_array_equal(logits >= pred.mask_threshold, masks)


@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')
def test_decoder_traced_with_one_query_holds_for_many(predictor):
    """No code path depends on the number of queries, so one trace serves every Q (export)."""
    class Decoder(torch.nn.Module):
        def __init__(self, model, embedding):
            super().__init__()
            self.model, self.embedding = model, embedding

        def forward(self, points, labels):
            return self.model.predict_masks(self.embedding, points, labels, True, 120, 200)

    def prompts(q):
        return torch.rand(1, q, 3, 2) * 100, torch.ones(1, q, 3)

    decoder = Decoder(predictor[0].model, predictor[0].image_embedding)
    with torch.no_grad():
        traced = torch.jit.trace(decoder, prompts(1), check_trace=False)
        for q in (1, 5):
            points, labels = prompts(q)
            for ours, reference in zip(traced(points, labels), decoder(points, labels)):
                torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_precision_option_runs_the_model_under_autocast_and_returns_float32():
    model = build_efficient_sam(TINY)
    reference, low_precision = EfficientSamPredictor(model), EfficientSamPredictor(model, precision='bf16')
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    outputs = []
    for pred in (reference, low_precision):
        pred.set_image(image)
        outputs.append(pred.predict(boxes=[4, 4, 40, 30], return_logits=True))
    (ref_logits, ref_iou, _), (bf16_logits, bf16_iou, bf16_low) = outputs
    assert bf16_logits.dtype == bf16_iou.dtype == bf16_low.dtype == np.float32
    assert np.abs(bf16_logits - ref_logits).max() < 0.05 * np.abs(ref_logits).max()
    assert not np.array_equal(bf16_logits, ref_logits)  # it did run in bfloat16


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match='precision must be one of fp32, bf16, fp16'):
        Predictor.__init__(FakePredictor(), precision='int4')
