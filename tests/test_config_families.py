"""The Ti/S/B configs of a family differ only in what the variant is (width, checkpoint, layer decay)."""
import functools
import os

import pytest

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402

from efficientsam_plugins.models.vit import vit_arch  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
ARCHS = ('tiny', 'small', 'base')
PRETRAIN = 'configs/sami/sami_vit-{}_sam-vit-h_in1k-400e{}.py'
FINETUNE = 'configs/imagenet/sami_vit-{}_in1k-100e{}.py'
PRETRAIN_KEYS = {'model.backbone.arch', 'model.neck.in_channels'}
FINETUNE_KEYS = {'model.backbone.arch', 'model.backbone.init_cfg.checkpoint', 'model.head.in_channels',
                 'optim_wrapper.paramwise_cfg.layer_decay_rate'}
FAMILIES = [(PRETRAIN, '', PRETRAIN_KEYS), (PRETRAIN, '_smoke', PRETRAIN_KEYS),
            (FINETUNE, '', FINETUNE_KEYS), (FINETUNE, '_smoke', FINETUNE_KEYS)]


def flatten(value, prefix=''):
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``; lists stay whole."""
    if not isinstance(value, dict):
        return {prefix[:-1]: value}
    return {k: v for key, item in value.items() for k, v in flatten(item, f'{prefix}{key}.').items()}


@functools.lru_cache(maxsize=None)
def load(pattern, arch, suffix=''):
    return flatten(Config.fromfile(os.path.join(REPO, pattern.format(arch, suffix))).to_dict())


@pytest.mark.parametrize('pattern,suffix,variant_keys', FAMILIES)
def test_siblings_differ_only_in_the_variant(pattern, suffix, variant_keys):
    configs = [load(pattern, arch, suffix) for arch in ARCHS]
    assert all(set(cfg) == set(configs[0]) for cfg in configs)
    differing = {key for key in configs[0] if any(cfg[key] != configs[0][key] for cfg in configs)}
    assert differing == variant_keys
    for arch, cfg in zip(ARCHS, configs):
        width = vit_arch(cfg['model.backbone.arch'])['embed_dim']
        assert cfg.get('model.neck.in_channels', cfg.get('model.head.in_channels')) == width
        if 'optim_wrapper.paramwise_cfg.layer_decay_rate' in variant_keys:
            assert cfg['optim_wrapper.paramwise_cfg.layer_decay_rate'] == (1.0 if arch == 'tiny' else 0.75)


@pytest.mark.parametrize('arch', ARCHS)
def test_smoke_variants_keep_their_full_configs_variant(arch):
    """A smoke config sets its variant again (it inherits the smoke base): it must equal the full one."""
    for pattern, variant_keys in ((PRETRAIN, PRETRAIN_KEYS), (FINETUNE, FINETUNE_KEYS)):
        full, smoke = load(pattern, arch), load(pattern, arch, '_smoke')
        for key in variant_keys - {'model.backbone.init_cfg.checkpoint'}:
            assert smoke[key] == full[key], (pattern, key)
    # The finetune smoke run loads the last checkpoint of the SAMI smoke run of the same width.
    sami_smoke = load(PRETRAIN, arch, '_smoke')
    expected = os.path.join('work_dirs', os.path.basename(PRETRAIN.format(arch, '_smoke'))[:-3],
                            f'iter_{sami_smoke["train_cfg.max_iters"]}.pth')
    assert load(FINETUNE, arch, '_smoke')['model.backbone.init_cfg.checkpoint'] == expected
