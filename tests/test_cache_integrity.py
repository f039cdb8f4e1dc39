"""Teacher caches under faults: a shard overwritten in place (same size), zeroed, or left without its
index is named when training opens the cache, before the first iteration; non-finite targets or
losses stop training with an error instead of a run that optimises NaN and exits 0."""
import glob
import hashlib
import os

import pytest
import torch

from efficientsam_plugins.training.feature_cache import FeatureCacheError, FeatureCacheWriter, TeacherFeatureCache
from efficientsam_plugins.training.sam_round import training_round
from efficientsam_plugins.training.teachers import Teacher, bind_teacher


def write_cache(root, tmp_path, images=4, records_per_shard=2):
    maps = {f'{i}.jpg': torch.randn(4, 3, 3) for i in range(images)}
    with FeatureCacheWriter(root, dict(teacher=dict(type='T'), image_root=str(tmp_path)),
                            records_per_shard=records_per_shard) as writer:
        for key, value in maps.items():
            writer.add(key, value)
    return maps, sorted(glob.glob(os.path.join(root, 'shards', '*.safetensors')))


def overwrite(path, offset, data):
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(data)
    assert os.path.getsize(path) == size  # in place: the index's size check cannot see it


def test_a_shard_overwritten_in_place_is_named_at_open(tmp_path):
    root = str(tmp_path / 'cache')
    maps, shards = write_cache(root, tmp_path)
    cache = TeacherFeatureCache(root).check()  # intact: opens
    torch.testing.assert_close(cache.get('3.jpg'), maps['3.jpg'].half())
    overwrite(shards[1], os.path.getsize(shards[1]) - 8, b'\xff' * 8)  # NaNs in the last map's data
    with pytest.raises(FeatureCacheError, match=f'{shards[1]}: sha256 mismatch') as error:
        TeacherFeatureCache(root).check()
    assert shards[0] not in str(error.value)  # only the damaged shard is named


def test_zeroed_shard_data_is_named_at_open(tmp_path):
    root = str(tmp_path / 'cache')
    _, shards = write_cache(root, tmp_path)
    header = 8 + int.from_bytes(open(shards[0], 'rb').read(8), 'little')
    overwrite(shards[0], header, bytes(os.path.getsize(shards[0]) - header))  # every map all zeros
    assert torch.equal(TeacherFeatureCache(root).get('0.jpg'), torch.zeros(4, 3, 3, dtype=torch.float16))
    with pytest.raises(FeatureCacheError, match=f'{shards[0]}: sha256 mismatch'):
        TeacherFeatureCache(root).check()
    overwrite(shards[0], 0, bytes(os.path.getsize(shards[0])))  # the whole file zeroed
    with pytest.raises(FeatureCacheError, match=f'{shards[0]}: sha256 mismatch'):
        TeacherFeatureCache(root).check()


def test_missing_index_or_shard_is_found_at_open(tmp_path):
    root = str(tmp_path / 'cache')
    _, shards = write_cache(root, tmp_path)
    os.remove(shards[1][:-len('.safetensors')] + '.json')
    with pytest.raises(FeatureCacheError, match=f'incomplete shard file {shards[1]}'):
        TeacherFeatureCache(root).check()
    os.remove(shards[1])
    TeacherFeatureCache(root).check()  # what is left is intact
    os.remove(shards[0])
    with pytest.raises(FeatureCacheError, match=f'shard {shards[0]} is incomplete or corrupt \\(missing\\)'):
        TeacherFeatureCache(root)
    os.remove(os.path.join(root, 'meta.json'))
    with pytest.raises(FeatureCacheError, match='meta.json is missing'):
        TeacherFeatureCache(root)


class ConstantTeacher(Teacher):
    """Embeds every image as the same map (NaN to simulate a broken teacher or cache)."""

    def __init__(self, value):
        super().__init__()
        self.value, self.calls = value, 0

    def embed(self, images):
        self.calls += 1
        return torch.full((len(images), 4, 2, 2), self.value)

    def decode(self, embedding, points, labels, img_size):
        return embedding.new_zeros(len(points), 3, 8, 8), embedding.new_zeros(len(points), 3)

    def describe(self):
        return dict(type='constant', value=str(self.value))


def test_on_demand_cache_is_verified_and_refills_after_an_interrupted_write(tmp_path):
    root, teacher = str(tmp_path / 'cache'), ConstantTeacher(1.0)
    meta = dict(teacher=teacher.describe())
    cache = TeacherFeatureCache(root, meta).check()
    torch.testing.assert_close(cache.embed(teacher, torch.zeros(2, 3, 8, 8), ['a', 'b']), torch.ones(2, 4, 2, 2))
    assert teacher.calls == 1 and len(TeacherFeatureCache(root, meta).check()) == 2
    # the shard the cache writes for a key alone is named by the key's sha1
    shard_a, shard_b = (os.path.join(root, 'shards', f'k-{hashlib.sha1(key).hexdigest()}.safetensors')
                        for key in (b'a', b'b'))
    os.remove(shard_b[:-len('.safetensors')] + '.json')  # killed between the shard and its index
    reopened = TeacherFeatureCache(root, meta).check()  # the leftover is removed, 'b' computed again
    assert not os.path.exists(shard_b) and 'b' not in reopened
    reopened.embed(teacher, torch.zeros(1, 3, 8, 8), ['b'])
    assert teacher.calls == 2
    overwrite(shard_a, os.path.getsize(shard_a) - 4, b'\x00\x7e\x00\x7e')
    with pytest.raises(FeatureCacheError, match=f'{shard_a}: sha256 mismatch'):
        TeacherFeatureCache(root, meta).check()


def test_non_finite_teacher_embeddings_stop_distillation():
    with pytest.raises(FloatingPointError, match=r'teacher embeddings of the images \[\'x.jpg\'\] hold NaN'):
        bind_teacher(ConstantTeacher(float('nan')), torch.zeros(1, 3, 8, 8), 8, 8, ['x.jpg'])
    targets = bind_teacher(ConstantTeacher(1.0), torch.zeros(1, 3, 8, 8), 8, 8)
    assert targets([torch.zeros(2, 1, 2)], [torch.ones(2, 1)]).shape == (2, 8, 8)


def test_non_finite_loss_stops_the_training_round():
    masks = [torch.zeros(2, 8, 8, dtype=torch.bool)]
    masks[0][:, 2:6, 2:6] = True

    def decode(points, labels):
        logits = torch.zeros(len(points[0]), 3, 8, 8)
        logits[0, :, 0, 0] = float('nan')
        return logits, torch.zeros(len(points[0]), 3)
    with pytest.raises(FloatingPointError, match='loss_focal, loss_dice.*hold NaN'):
        training_round(decode, masks, 32, generator=torch.Generator().manual_seed(0))


def test_sami_stops_on_non_finite_cached_targets_and_transform_refuses_a_damaged_cache(tmp_path):
    pytest.importorskip('mmpretrain')
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS, TRANSFORMS
    from mmpretrain.structures import DataSample

    import efficientsam_plugins.openmmlab.mmpretrain  # noqa: F401  (registers SAMI)
    init_default_scope('mmpretrain')
    smoke = Config.fromfile(os.path.join(os.path.dirname(__file__), '..', 'configs', 'sami',
                                         'sami_vit-tiny_sam-vit-h_in1k-400e_smoke.py'))
    model = MODELS.build(dict(smoke.model, teacher_mode='cached'))  # the teacher is not built
    channels, grid = model.head.proj.out_features, model.backbone.img_size // model.backbone.patch_size
    samples = [DataSample(metainfo=dict(img_path=f'{i}.jpg', sample_idx=i)) for i in range(2)]
    for i, sample in enumerate(samples):
        sample.set_field(torch.full((channels, grid, grid), float('nan') if i else 0.0), 'sami_target')
    with pytest.raises(FloatingPointError, match='the teacher targets of 1.jpg hold NaN'):
        model.loss(torch.zeros(2, 3, grid * 16, grid * 16), samples)

    root = str(tmp_path / 'cache')
    _, shards = write_cache(root, tmp_path)
    overwrite(shards[0], os.path.getsize(shards[0]) - 2, b'\x00\x7e')
    with pytest.raises(FeatureCacheError, match=f'{shards[0]}: sha256 mismatch'):
        TRANSFORMS.build(dict(type='LoadSAMITeacherTarget', cache_root=root))
