"""SqueezeSAM's whole-object augmentations on crafted masks: the merged target is the union of the
related masks (clicks stay on the part), injected clicks lie outside the target, the crop contains
the chosen object; and the registered transforms and dataset that wrap them."""
import os

import pytest
import torch
from conftest import COCO_MINI

from efficientsam_plugins.training.augment import (
    crop_masks,
    mask_box,
    merge_whole_objects,
    object_crop_box,
    sample_outlier_clicks,
    whole_object_relations,
)

H = W = 40


def rect(x1, y1, x2, y2):
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[y1:y2, x1:x2] = True
    return mask


@pytest.fixture
def scene():
    """person, the T-shirt on them, a ball touching the person's side, a tree far away."""
    person = rect(10, 5, 20, 35)
    shirt = rect(11, 10, 19, 20)
    ball = rect(20, 15, 25, 20)
    tree = rect(32, 2, 38, 38)
    return torch.stack([person, shirt, ball, tree])


def test_relations_find_wholes_and_touching_objects(scene):
    wholes, neighbours = whole_object_relations(scene, touch_distance=1)
    assert wholes.nonzero().tolist() == [[1, 0]]  # the shirt is a part of the person
    assert neighbours[0, 1] and neighbours[1, 0] and neighbours[0, 2] and neighbours[2, 0]
    assert not neighbours[1, 2] and not neighbours[:, 3].any() and not neighbours[3].any()


def test_merged_target_is_the_union_and_the_click_stays_on_the_part(scene):
    person, shirt, ball, tree = scene
    targets, clicks = merge_whole_objects(scene, probability=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(clicks, scene)
    assert torch.equal(targets[0], person | shirt | ball)  # a person and what they hold
    assert torch.equal(targets[1], person | shirt)  # a click on the T-shirt selects the person
    assert torch.equal(targets[2], ball | person)
    assert torch.equal(targets[3], tree)
    for target, click in zip(targets, clicks):
        assert not (click & ~target).any()


def test_merge_rule_and_probabilities_are_configurable(scene):
    person, shirt, ball, _ = scene
    unmerged, _ = merge_whole_objects(scene, probability=0.0)
    assert torch.equal(unmerged, scene)
    parts_only, _ = merge_whole_objects(scene, probability=1.0, merge_touching=False)
    assert torch.equal(parts_only[1], person | shirt) and torch.equal(parts_only[2], ball)
    assert torch.equal(parts_only[0], person)  # the whole gains nothing from its part alone
    none_joined, _ = merge_whole_objects(scene, probability=1.0, neighbour_probability=0.0)
    assert torch.equal(none_joined, scene)
    rates = [merge_whole_objects(scene, probability=0.5)[0][1].sum() > shirt.sum() for _ in range(400)]
    assert 0.4 < sum(rates) / len(rates) < 0.6
    with pytest.raises(ValueError, match='probability'):
        merge_whole_objects(scene, probability=1.5)


def test_outlier_clicks_lie_outside_the_target(scene):
    generator = torch.Generator().manual_seed(0)
    points, valid = sample_outlier_clicks(scene, max_clicks=3, probability=1.0, margin=2, scale=4,
                                          generator=generator)
    assert points.shape == (4, 3, 2) and valid.shape == (4, 3) and valid[:, 0].all()
    grown = torch.nn.functional.max_pool2d(scene[:, None].float(), 5, 1, 2)[:, 0] > 0
    for q in range(4):
        for x, y in points[q][valid[q]].tolist():
            assert 0 <= x < W * 4 and 0 <= y < H * 4
            assert not grown[q, int(y) // 4, int(x) // 4], (q, x, y)
    assert (points[~valid] == -1).all()


def test_outlier_probability_and_a_target_without_background():
    everything = torch.ones(2, 8, 8, dtype=torch.bool)
    _, valid = sample_outlier_clicks(everything, max_clicks=2, probability=1.0)
    assert not valid.any()
    _, valid = sample_outlier_clicks(torch.zeros(50, 8, 8, dtype=torch.bool) | rect(0, 0, 1, 1)[:8, :8],
                                     max_clicks=2, probability=0.0)
    assert not valid.any()
    _, valid = sample_outlier_clicks(rect(0, 0, 2, 2)[None].repeat(400, 1, 1), max_clicks=2, probability=0.5)
    assert 0.4 < valid[:, 0].float().mean() < 0.6
    assert valid[:, 1].sum() < valid[:, 0].sum()  # 1 or 2 clicks


def test_crop_contains_the_chosen_object(scene):
    generator = torch.Generator().manual_seed(0)
    for index in range(4):
        for _ in range(25):
            box = mask_box(scene[index])
            x1, y1, x2, y2 = object_crop_box(box, (H, W), (1.2, 3.0), generator)
            assert 0 <= x1 <= box[0] and box[2] <= x2 <= W and 0 <= y1 <= box[1] and box[3] <= y2 <= H
            cropped, keep = crop_masks(scene, (x1, y1, x2, y2))
            assert index in keep.tolist()
            chosen = cropped[keep.tolist().index(index)]
            assert chosen.sum() == scene[index].sum()  # the whole object is inside
            assert cropped.shape[-2:] == (y2 - y1, x2 - x1) and cropped.flatten(1).any(1).all()


def test_crop_scale_follows_the_context_range():
    x1, y1, x2, y2 = object_crop_box((100, 100, 110, 120), (1000, 1000), (2.0, 2.0))
    assert (x2 - x1, y2 - y1) == (40, 40)
    assert object_crop_box((0, 0, 30, 5), (20, 30), (3.0, 3.0)) == (0, 0, 30, 20)  # cut to the image
    with pytest.raises(ValueError, match='context'):
        object_crop_box((0, 0, 5, 5), (20, 20), (0.5, 2.0))
    _, keep = crop_masks(torch.stack([rect(0, 0, 10, 10), rect(5, 5, 15, 15)]), (0, 0, 10, 10), min_visible=0.5)
    assert keep.tolist() == [0]


def test_registered_transforms_make_a_training_sample(scene):
    from mmengine.dataset import Compose

    import efficientsam_plugins.openmmlab.squeezesam  # noqa: F401  (registers the transforms)
    torch.manual_seed(0)
    pipeline = Compose([
        dict(type='RandomObjectCrop', context=(1.5, 3.0), probability=1.0),
        dict(type='ResizeToModelInput', img_size=32, mask_size=16),
        dict(type='MergeWholeObjects', probability=1.0),
        dict(type='InjectOutlierClicks', max_clicks=2, probability=1.0),
        dict(type='PackPromptSample', max_queries=2),
    ])
    image = torch.randint(0, 255, (3, H, W), dtype=torch.uint8)
    out = pipeline(dict(img=image, gt_masks=scene, img_path='x.jpg', image_id=1, ori_shape=(H, W)))
    sample = out['data_samples']
    assert out['inputs'].shape == (3, 32, 32) and out['inputs'].dtype == torch.uint8
    q = len(sample['gt_masks'])
    assert 1 <= q <= 2 and sample['gt_masks'].shape == sample['click_masks'].shape == (q, 16, 16)
    assert sample['outlier_points'].shape == (q, 2, 2) and len(sample['crop_box']) == 4
    assert not (sample['click_masks'] & ~sample['gt_masks']).any()
    for t, pts, ok in zip(sample['gt_masks'], sample['outlier_points'], sample['outlier_valid']):
        for x, y in pts[ok].tolist():
            assert not t[int(y) // 2, int(x) // 2]
    with pytest.raises(KeyError, match='pipeline order'):
        Compose([dict(type='InjectOutlierClicks')])(dict(img=image))


def test_dataset_runs_the_pipeline_on_coco_mini():
    from efficientsam_plugins.openmmlab.whole_object import SqueezeSamSA1BDataset
    pipeline = [dict(type='RandomObjectCrop'), dict(type='ResizeToModelInput', img_size=64, mask_size=32),
                dict(type='MergeWholeObjects'), dict(type='InjectOutlierClicks'),
                dict(type='PackPromptSample', max_queries=4)]
    import efficientsam_plugins.openmmlab.squeezesam  # noqa: F401
    dataset = SqueezeSamSA1BDataset(ann_file=os.path.join(COCO_MINI, 'annotations', 'instances_train2017.json'),
                                    img_dir=os.path.join(COCO_MINI, 'train2017'), img_size=64, mask_size=32,
                                    load_size=128, max_images=2, pipeline=pipeline)
    sample = dataset[0]
    assert sample['inputs'].shape == (3, 64, 64)
    masks = sample['data_samples']['gt_masks']
    assert masks.dtype == torch.bool and masks.shape[1:] == (32, 32) and 1 <= len(masks) <= 4
    assert masks.flatten(1).any(1).all()
