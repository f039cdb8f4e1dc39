"""SAMI's pure-PyTorch core: masking, decoder, head, teachers, view cropping, feature cache."""
import copy
import glob
import os

import pytest
import torch
import torch.nn.functional as F

from efficientsam_plugins.modeling.sami.decoder import CrossAttentionDecoder, sincos_pos_embed_2d
from efficientsam_plugins.modeling.sami.head import ProjectionHead, ReconstructionLoss
from efficientsam_plugins.modeling.sami.masking import random_token_mask
from efficientsam_plugins.modeling.vit import ViT
from efficientsam_plugins.training.feature_cache import FeatureCacheError, FeatureCacheWriter, TeacherFeatureCache
from efficientsam_plugins.training.teachers import SAMTeacher, TeacherSlot
from efficientsam_plugins.training.views import FULL_BOX, compose_boxes, crop_to_views, resize_to_grid

TINY_SAM = dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=[1], img_size=128,
                window_size=2, out_chans=16)


def save_tiny_sam(path, arch=TINY_SAM, seed=0):
    """A SAM-format checkpoint (``image_encoder.*`` plus other parts) with random weights."""
    torch.manual_seed(seed)
    encoder = SAMTeacher(arch, checkpoint=None).encoder
    for param in encoder.parameters():
        torch.nn.init.normal_(param, std=0.05)
    state = {f'image_encoder.{k}': v for k, v in encoder.state_dict().items()}
    state['mask_decoder.iou_token.weight'] = torch.zeros(1, 4)
    torch.save(state, path)
    return encoder


# ---------------------------------------------------------------- masking
@pytest.mark.parametrize('ratio', [0.0, 1.0, -0.2, 1.5])
def test_mask_ratio_outside_open_interval_is_an_error(ratio):
    with pytest.raises(ValueError, match='strictly between 0 and 1'):
        random_token_mask(torch.arange(2), 0, 16, ratio)


def test_masks_are_per_sample_and_a_function_of_seed_step_and_id():
    mask = random_token_mask(torch.arange(8), step=3, num_tokens=196, mask_ratio=0.75, seed=7)
    assert mask.dtype == torch.bool and mask.shape == (8, 196)
    assert (mask.sum(1) == 147).all()
    assert len({tuple(m.tolist()) for m in mask}) == 8
    again = random_token_mask(torch.tensor([5, 3]), 3, 196, 0.75, seed=torch.tensor(7))
    assert torch.equal(again, mask[[5, 3]])
    assert not torch.equal(random_token_mask(torch.arange(8), 4, 196, 0.75, seed=7), mask)
    assert not torch.equal(random_token_mask(torch.arange(8), 3, 196, 0.75, seed=8), mask)
    fraction = random_token_mask(torch.arange(4000), 0, 16, 0.75).float().mean(0)
    assert (fraction - 0.75).abs().max() < 0.05


# ---------------------------------------------------------------- decoder and head
def _encoder_and_decoder():
    torch.manual_seed(0)
    vit = ViT(dict(embed_dim=32, depth=2, num_heads=2), img_size=64, final_norm=True).eval()
    decoder = CrossAttentionDecoder(32, embed_dim=48, depth=2, num_heads=4).eval()
    return vit, decoder


def test_decoder_merges_visible_and_masked_tokens_in_raster_order():
    vit, decoder = _encoder_and_decoder()
    mask = random_token_mask(torch.arange(2), 0, 16, 0.75)
    visible, ids = vit.forward_masked(torch.rand(2, 3, 64, 64), mask)
    out = decoder(visible, ids, mask, (4, 4))
    assert out.shape == (2, 16, 48)
    pos = sincos_pos_embed_2d((4, 4), 48)
    expected_visible = decoder.norm(decoder.decoder_embed(visible) + pos[ids])
    torch.testing.assert_close(torch.gather(out, 1, ids[..., None].expand(-1, -1, 48)), expected_visible)
    shuffle = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(decoder(visible[:, shuffle], ids[:, shuffle], mask, (4, 4)), out,
                               rtol=1e-5, atol=1e-5)


def test_masked_queries_attend_to_visible_tokens():
    vit, decoder = _encoder_and_decoder()
    mask = random_token_mask(torch.arange(1), 0, 16, 0.75)
    visible, ids = vit.forward_masked(torch.rand(1, 3, 64, 64), mask)
    out = decoder(visible, ids, mask, (4, 4))
    changed = decoder(visible + torch.randn_like(visible), ids, mask, (4, 4))
    assert not torch.allclose(out[mask], changed[mask])


def test_decoder_rejects_inconsistent_inputs():
    vit, decoder = _encoder_and_decoder()
    mask = random_token_mask(torch.arange(2), 0, 16, 0.75)
    visible, ids = vit.forward_masked(torch.rand(2, 3, 64, 64), mask)
    with pytest.raises(ValueError, match='channels'):
        decoder(visible[..., :16], ids, mask, (4, 4))
    with pytest.raises(ValueError, match='grid'):
        decoder(visible, ids, mask, (4, 5))


def test_reconstruction_losses():
    pred, target = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    torch.testing.assert_close(ReconstructionLoss('mse')(pred, target), F.mse_loss(pred, target))
    cosine = (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
    torch.testing.assert_close(ReconstructionLoss('cosine')(pred, target), cosine)
    with pytest.raises(ValueError, match='unknown reconstruction criterion'):
        ReconstructionLoss('l1')
    with pytest.raises(ValueError, match="teacher's channels"):
        ProjectionHead(4, 8).loss(torch.randn(2, 5, 4), torch.randn(2, 5, 6))


# ---------------------------------------------------------------- teachers
def test_sam_teacher_loads_only_the_image_encoder_and_matches_segment_anything(tmp_path):
    pytest.importorskip('segment_anything')
    path = tmp_path / 'tiny_sam.pth'
    reference = save_tiny_sam(path).eval()
    teacher = SAMTeacher(TINY_SAM, checkpoint=str(path), resolution=128)
    x = torch.randn(2, 3, 128, 128)
    torch.testing.assert_close(teacher(x), reference(x))
    assert teacher(torch.randn(2, 3, 64, 64), (4, 4)).shape == (2, 16, 4, 4)
    student_res = SAMTeacher(TINY_SAM, checkpoint=str(path))
    assert student_res(torch.randn(2, 3, 64, 64)).shape == (2, 16, 4, 4)
    last = SAMTeacher(TINY_SAM, checkpoint=str(path), layer='last_block')
    assert last.out_channels == 32 and last(torch.randn(1, 3, 64, 64)).shape == (1, 32, 4, 4)


def test_sam_teacher_is_frozen(tmp_path):
    pytest.importorskip('segment_anything')
    path = tmp_path / 'tiny_sam.pth'
    save_tiny_sam(path)
    teacher = SAMTeacher(TINY_SAM, checkpoint=str(path))
    before = copy.deepcopy(teacher.state_dict())
    teacher.train()
    teacher.init_weights()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    out = teacher(torch.randn(1, 3, 64, 64, requires_grad=True))
    assert not out.requires_grad
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_sam_teacher_errors_name_the_expected_file_and_keys(tmp_path):
    pytest.importorskip('segment_anything')
    with pytest.raises(FileNotFoundError, match='sam_vit_h_4b8939.pth'):
        SAMTeacher('vit_h', checkpoint=str(tmp_path / 'missing.pth'))
    path = tmp_path / 'tiny_sam.pth'
    save_tiny_sam(path)
    deeper = dict(TINY_SAM, depth=3, global_attn_indexes=[2])
    with pytest.raises(ValueError, match=r'missing keys \(blocks\.2\.'):
        SAMTeacher(deeper, checkpoint=str(path))
    torch.save({'model': {'backbone.weight': torch.zeros(1)}}, tmp_path / 'other.pth')
    with pytest.raises(ValueError, match='image_encoder'):
        SAMTeacher(TINY_SAM, checkpoint=str(tmp_path / 'other.pth'))
    with pytest.raises(ValueError, match='unknown SAM arch'):
        SAMTeacher('vit_x', checkpoint=None)


def test_efficientsam_encoder_serves_as_teacher(tmp_path):
    from efficientsam_plugins.build import build_efficient_sam
    from efficientsam_plugins.training.teachers import EfficientSAMTeacher
    torch.manual_seed(0)
    model = build_efficient_sam('ti')
    torch.save({'model': model.state_dict()}, tmp_path / 'efficient_sam_vitt.pt')
    teacher = EfficientSAMTeacher('ti', checkpoint=str(tmp_path / 'efficient_sam_vitt.pt'))
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(teacher(x), model.image_encoder(x))
    assert teacher.out_channels == 256
    with pytest.raises(FileNotFoundError, match='efficient_sam_vitt.pt'):
        EfficientSAMTeacher('ti', checkpoint=str(tmp_path / 'nope.pt'))


def test_teacher_slot_keeps_the_teacher_out_of_the_tree_but_moves_it():
    pytest.importorskip('segment_anything')
    holder = torch.nn.Module()
    holder.student = torch.nn.Linear(2, 2)
    holder.target_generator = TeacherSlot(SAMTeacher(TINY_SAM, checkpoint=None))
    teacher = holder.target_generator.teacher
    assert set(holder.state_dict()) == {'student.weight', 'student.bias'}
    assert len(list(holder.parameters())) == 2
    before = teacher.encoder.patch_embed.proj.weight.clone()
    holder.apply(lambda m: torch.nn.init.zeros_(m.weight) if hasattr(m, 'weight') else None)
    assert torch.equal(teacher.encoder.patch_embed.proj.weight, before)
    holder.double()
    assert teacher.encoder.patch_embed.proj.weight.dtype == torch.float64
    assert holder.target_generator(torch.randn(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


# ---------------------------------------------------------------- views
def test_crop_to_views_full_box_is_identity_and_flip_mirrors():
    maps = torch.randn(2, 3, 6, 8)
    out = crop_to_views(maps, [FULL_BOX, FULL_BOX], [False, True], (6, 8))
    torch.testing.assert_close(out[0], maps[0])
    torch.testing.assert_close(out[1], maps[1].flip(-1))
    left = crop_to_views(maps[:1], [(0.0, 0.0, 0.5, 1.0)], [False], (6, 4))
    torch.testing.assert_close(left[0], maps[0, :, :, :4])
    assert resize_to_grid(maps, (3, 4)).shape == (2, 3, 3, 4)
    with pytest.raises(ValueError, match='view boxes'):
        crop_to_views(maps, [(0.5, 0, 0.2, 1), FULL_BOX], [False, False], (2, 2))


def test_compose_boxes():
    assert compose_boxes((0.5, 0.0, 1.0, 0.5), (0.0, 0.5, 0.5, 1.0)) == (0.5, 0.25, 0.75, 0.5)


# ---------------------------------------------------------------- feature cache
def _meta(tmp_path):
    return dict(teacher=dict(type='T'), image_size=64, image_root=str(tmp_path))


def test_cache_roundtrip_several_ranks_and_resume(tmp_path):
    root = str(tmp_path / 'cache')
    maps = {f'img{i}.jpg': torch.randn(4, 2, 3) for i in range(7)}
    for rank in (0, 1):
        with FeatureCacheWriter(root, _meta(tmp_path), rank=rank, records_per_shard=2) as writer:
            for i, (key, value) in enumerate(maps.items()):
                if i % 2 == rank and i < 5:
                    writer.add(key, value)
    writer = FeatureCacheWriter(root, _meta(tmp_path), rank=0, records_per_shard=2)
    with pytest.raises(RuntimeError, match='interrupted'):
        with writer:
            writer.add('img5.jpg', maps['img5.jpg'])
            raise RuntimeError('interrupted')
    cache = TeacherFeatureCache(root)
    assert sorted(cache.keys()) == [f'img{i}.jpg' for i in range(5)] and not cache.incomplete
    for key in cache.keys():
        torch.testing.assert_close(cache.get(key), maps[key].half())
    assert cache.verify() == []
    index = sorted(glob.glob(os.path.join(root, 'shards', 'r0001-*.json')))[0]
    os.remove(index)  # as if killed between writing a shard and its index
    cache = TeacherFeatureCache(root)
    assert cache.incomplete == [index[:-len('.json')] + '.safetensors'] and len(cache) == 3
    with pytest.raises(KeyError, match='interrupted extraction'):
        cache.get('img1.jpg')
    assert cache.verify() == [f'incomplete shard file {cache.incomplete[0]}']
    with pytest.raises(FeatureCacheError, match='different settings'):
        FeatureCacheWriter(root, dict(_meta(tmp_path), image_size=128))


def test_cache_reports_corrupt_and_truncated_shards(tmp_path):
    root = str(tmp_path / 'cache')
    with FeatureCacheWriter(root, _meta(tmp_path), records_per_shard=8) as writer:
        for i in range(3):
            writer.add(f'{i}.jpg', torch.randn(4, 2, 2))
    (shard,) = glob.glob(os.path.join(root, 'shards', '*.safetensors'))
    size = os.path.getsize(shard)
    for offset in (size - 1, 40):  # a data byte (found by verify), then a header byte (on every read)
        with open(shard, 'r+b') as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0xFF]))
        cache = TeacherFeatureCache(root)
        assert cache.verify() == [f'{shard}: sha256 mismatch (corrupt)']
    with pytest.raises(FeatureCacheError, match=f'shard {shard} is corrupt'):
        cache.get('1.jpg')
    with open(shard, 'r+b') as f:
        f.truncate(50)
    with pytest.raises(FeatureCacheError, match=f'shard {shard} is incomplete or corrupt'):
        TeacherFeatureCache(root)
    with pytest.raises(FeatureCacheError, match='meta.json is missing'):
        TeacherFeatureCache(str(tmp_path / 'nothing'))


@pytest.mark.parametrize('resolution', ['student', 128])
def test_cached_targets_equal_online_targets_for_the_same_view(tmp_path, resolution):
    """The identity view (the whole image at the cached size, no flip): cached == online in fp16."""
    pytest.importorskip('segment_anything')
    path = tmp_path / 'tiny_sam.pth'
    save_tiny_sam(path)
    teacher = SAMTeacher(TINY_SAM, checkpoint=str(path), resolution=resolution)
    images = torch.randn(3, 3, 64, 64)
    online = teacher(images, (4, 4))
    root = str(tmp_path / 'cache')
    with FeatureCacheWriter(root, dict(_meta(tmp_path), teacher=teacher.describe())) as writer:
        for i, maps in enumerate(teacher(images)):
            writer.add(f'{i}.jpg', maps)
    cache = TeacherFeatureCache(root)
    cached = crop_to_views(torch.stack([cache.get(f'{i}.jpg') for i in range(3)]),
                           [FULL_BOX] * 3, [False] * 3, (4, 4))
    scale = online.abs().max()
    torch.testing.assert_close(cached, online, rtol=1e-3, atol=float(scale) * 1e-3)
