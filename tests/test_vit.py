import pytest
import torch

from efficientsam_plugins.modeling.attention import eager_attention
from efficientsam_plugins.modeling.vit import ViT, resize_abs_pos, vit_arch


@pytest.mark.parametrize('name,dims', [('ti', (192, 12, 3)), ('s', (384, 12, 6)), ('b', (768, 12, 12))])
def test_variants(name, dims):
    arch = vit_arch(name)
    assert (arch['embed_dim'], arch['depth'], arch['num_heads']) == dims


def test_unknown_variant():
    for name in ('huge', 'tiny'):  # one spelling: the core's
        with pytest.raises(ValueError, match=f"unknown ViT variant '{name}'; expected one of"):
            vit_arch(name)


def test_parameter_names_match_official_encoder():
    model = ViT('ti', img_size=1024, neck_dims=[256, 256])
    names = set(model.state_dict())
    for key in ['pos_embed', 'patch_embed.proj.weight', 'blocks.0.norm1.weight', 'blocks.0.attn.qkv.weight',
                'blocks.0.attn.qkv.bias', 'blocks.0.attn.proj.weight', 'blocks.11.mlp.fc1.weight',
                'blocks.11.mlp.fc2.bias', 'neck.0.weight', 'neck.1.weight', 'neck.2.weight', 'neck.3.bias']:
        assert key in names, key
    assert model.pos_embed.shape == (1, 197, 192)
    assert not any(k.startswith('norm.') for k in names)


def test_forward_shapes_any_grid():
    model = ViT({'embed_dim': 32, 'depth': 2, 'num_heads': 2}, img_size=64).eval()
    assert model(torch.rand(2, 3, 64, 96)).shape == (2, 32, 4, 6)
    with_neck = ViT({'embed_dim': 32, 'depth': 2, 'num_heads': 2}, img_size=64, neck_dims=[16, 16])
    assert with_neck(torch.rand(1, 3, 32, 32)).shape == (1, 16, 2, 2)


def test_pos_embed_interpolation_is_identity_at_pretrain_grid():
    pos = torch.randn(1, 197, 8)
    assert torch.equal(resize_abs_pos(pos, True, (14, 14))[0].reshape(196, 8), pos[0, 1:])
    assert resize_abs_pos(pos, True, (20, 30)).shape == (1, 20, 30, 8)


def test_window_attention_with_full_window_equals_global():
    torch.manual_seed(0)
    arch = {'embed_dim': 32, 'depth': 2, 'num_heads': 2}
    global_model = ViT(arch, img_size=64, use_rel_pos=True).eval()
    window_model = ViT(arch, img_size=64, use_rel_pos=True, window_size=4).eval()
    window_model.load_state_dict(global_model.state_dict())
    for block in global_model.blocks:
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.1)
    window_model.load_state_dict(global_model.state_dict())
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(window_model(x), global_model(x), rtol=1e-5, atol=1e-5)


def test_window_attention_pads_uneven_grid():
    model = ViT({'embed_dim': 32, 'depth': 3, 'num_heads': 2}, img_size=80, window_size=3,
                global_attn_indexes=[1], use_rel_pos=True).eval()
    assert model(torch.rand(1, 3, 80, 80)).shape == (1, 32, 5, 5)


def test_sdpa_matches_eager_attention():
    torch.manual_seed(0)
    model = ViT({'embed_dim': 32, 'depth': 2, 'num_heads': 2}, img_size=64, window_size=2,
                global_attn_indexes=[1], use_rel_pos=True).eval()
    for block in model.blocks:
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.1)
    x = torch.rand(2, 3, 64, 64)
    fused = model(x)
    with eager_attention():
        eager = model(x)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)


def test_masked_forward_runs_only_visible_tokens():
    torch.manual_seed(0)
    model = ViT({'embed_dim': 32, 'depth': 2, 'num_heads': 2}, img_size=64, final_norm=True).eval()
    x = torch.rand(2, 3, 64, 64)
    no_mask = torch.zeros(2, 16, dtype=torch.bool)
    full, ids = model.forward_masked(x, no_mask)
    torch.testing.assert_close(full, model.forward_features(x).flatten(2).transpose(1, 2))
    assert torch.equal(ids, torch.arange(16).expand(2, 16))

    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [1, 5, 7, 9]] = True
    mask[1, [0, 2, 3, 15]] = True
    visible, ids = model.forward_masked(x, mask)
    assert visible.shape == (2, 12, 32)
    assert not mask.gather(1, ids).any()
    tokens = model.embed(x).flatten(1, 2)
    expected = tokens[0, ~mask[0]][None]
    for block in model.blocks:
        expected = block(expected)
    torch.testing.assert_close(visible[:1], model.norm(expected))


def test_masked_forward_rejects_bad_masks():
    model = ViT({'embed_dim': 32, 'depth': 1, 'num_heads': 2}, img_size=64)
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(ValueError, match='mask must be bool'):
        model.forward_masked(x, torch.zeros(2, 15, dtype=torch.bool))
    uneven = torch.zeros(2, 16, dtype=torch.bool)
    uneven[0, 0] = True
    with pytest.raises(ValueError, match='same, non-zero number of visible tokens'):
        model.forward_masked(x, uneven)
    windowed = ViT({'embed_dim': 32, 'depth': 1, 'num_heads': 2}, img_size=64, window_size=2)
    with pytest.raises(ValueError, match='window attention needs the token grid'):
        windowed.forward_masked(x, torch.zeros(2, 16, dtype=torch.bool))


def test_bad_input_shapes():
    model = ViT({'embed_dim': 32, 'depth': 1, 'num_heads': 2}, img_size=64)
    with pytest.raises(ValueError, match='expected images'):
        model(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match='not divisible by the patch size'):
        model(torch.rand(1, 3, 60, 64))
    with pytest.raises(ValueError, match='outside the 1 blocks'):
        ViT({'embed_dim': 32, 'depth': 1, 'num_heads': 2}, window_size=2, global_attn_indexes=[3])


def test_layer_depth_for_layer_decay():
    model = ViT('ti')
    assert model.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 14)
    assert model.get_layer_depth('backbone.patch_embed.proj.weight', 'backbone.') == (0, 14)
    assert model.get_layer_depth('backbone.blocks.0.attn.qkv.weight', 'backbone.') == (1, 14)
    assert model.get_layer_depth('backbone.blocks.11.mlp.fc2.bias', 'backbone.') == (12, 14)
    assert model.get_layer_depth('backbone.neck.0.weight', 'backbone.') == (13, 14)
    assert model.get_layer_depth('neck.lateral.weight', 'backbone.') == (13, 14)


def test_drop_path_and_checkpointing_train():
    model = ViT({'embed_dim': 32, 'depth': 2, 'num_heads': 2}, img_size=32, drop_path_rate=0.5,
                with_cp=True).train()
    out = model(torch.rand(2, 3, 32, 32))
    out.sum().backward()
    assert model.blocks[1].drop_path.drop_prob == 0.5
    assert model.patch_embed.proj.weight.grad is not None
