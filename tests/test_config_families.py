"""The Ti/S/B configs of a family differ only in what the variant is (width, checkpoint, layer decay)."""
import functools
import os

import pytest

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402

from efficientsam_plugins.modeling.vit import vit_arch  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
ARCHS = ('tiny', 'small', 'base')
PRETRAIN = 'configs/sami/sami_vit-{}_sam-vit-h_in1k-400e{}.py'
PRETRAIN_1024 = 'configs/sami/sami_vit-{}_sam-vit-h-1024px_in1k-400e{}.py'
FINETUNE = 'configs/imagenet/sami_vit-{}_in1k-100e{}.py'
PRETRAIN_KEYS = {'model.backbone.arch', 'model.neck.in_channels'}
FINETUNE_KEYS = {'model.backbone.arch', 'model.backbone.init_cfg.checkpoint', 'model.head.in_channels',
                 'optim_wrapper.paramwise_cfg.layer_decay_rate'}
FAMILIES = [(PRETRAIN, '', PRETRAIN_KEYS), (PRETRAIN, '_smoke', PRETRAIN_KEYS),
            (PRETRAIN_1024, '', PRETRAIN_KEYS), (PRETRAIN_1024, '_smoke', PRETRAIN_KEYS),
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
    for pattern, variant_keys in ((PRETRAIN, PRETRAIN_KEYS), (PRETRAIN_1024, PRETRAIN_KEYS),
                                  (FINETUNE, FINETUNE_KEYS)):
        full, smoke = load(pattern, arch), load(pattern, arch, '_smoke')
        for key in variant_keys - {'model.backbone.init_cfg.checkpoint'}:
            assert smoke[key] == full[key], (pattern, key)
    # The finetune smoke run loads the last checkpoint of the SAMI smoke run of the same width.
    sami_smoke = load(PRETRAIN, arch, '_smoke')
    expected = os.path.join('work_dirs', os.path.basename(PRETRAIN.format(arch, '_smoke'))[:-3],
                            f'iter_{sami_smoke["train_cfg.max_iters"]}.pth')
    assert load(FINETUNE, arch, '_smoke')['model.backbone.init_cfg.checkpoint'] == expected


# Detection (mmdet, detectron2) and Mask2Former: the Ti/S/B configs of a family differ in width and
# starting checkpoint only; a named variant differs from its paper config only in what it is named for.
TASK_ARCHS = ('ti', 's', 'b')
VITDET = 'configs/vitdet/sami_{}_coco{}.py'
MASK2FORMER = 'configs/mask2former/sami_{}_ade20k{}.py'
D2_VITDET = 'configs/detectron2/vitdet/sami_{}_coco{}.py'
TASK_KEYS = {'model.backbone.arch', 'model.backbone.init_cfg.checkpoint', 'model.neck.backbone_channel'}
TASK_VARIANTS = [  # (pattern, suffix, archs, keys that differ from the paper config)
    (VITDET, '_step-lr', TASK_ARCHS, {'optim_wrapper.optimizer.lr', 'param_scheduler'}),
    (VITDET, '_efficientsam-init', ('ti', 's'), {'model.backbone.init_cfg.checkpoint'}),
    (MASK2FORMER, '_layer-decay', TASK_ARCHS, {'optim_wrapper.paramwise_cfg.layer_decay_rate'}),
]


def differing_keys(configs):
    assert all(set(cfg) == set(configs[0]) for cfg in configs)
    return {key for key in configs[0] if any(cfg[key] != configs[0][key] for cfg in configs)}


@pytest.mark.parametrize('pattern,suffix', [(VITDET, ''), (VITDET, '_step-lr'), (MASK2FORMER, ''),
                                            (MASK2FORMER, '_layer-decay')])
def test_task_siblings_differ_only_in_width_and_checkpoint(pattern, suffix):
    configs = [load(pattern, arch, suffix) for arch in TASK_ARCHS]
    assert differing_keys(configs) == TASK_KEYS
    for cfg in configs:
        assert cfg['model.neck.backbone_channel'] == vit_arch(cfg['model.backbone.arch'])['embed_dim']


@pytest.mark.parametrize('pattern,suffix,archs,variant_keys', TASK_VARIANTS)
def test_task_variants_differ_from_the_paper_config_only_in_their_variant(pattern, suffix, archs, variant_keys):
    for arch in archs:
        assert differing_keys([load(pattern, arch), load(pattern, arch, suffix)]) == variant_keys, (arch, suffix)


def flatten_lazy(path):
    """A detectron2 LazyConfig, flattened; partials (lr factor functions) as their function and arguments."""
    from detectron2.config import LazyConfig
    from omegaconf import OmegaConf
    tree = OmegaConf.to_container(LazyConfig.load(os.path.join(REPO, path)), resolve=False)
    return {key: (value.func, value.args, value.keywords) if isinstance(value, functools.partial) else value
            for key, value in flatten(tree).items()}


def test_detectron2_families_differ_only_in_the_variant():
    pytest.importorskip('detectron2', reason='detectron2 is not installed (see docs/detection.md, "detectron2")')
    lazy = {(arch, suffix): flatten_lazy(D2_VITDET.format(arch, suffix))
            for arch in TASK_ARCHS for suffix in ('', '_step-lr', '_efficientsam-init')
            if not (arch == 'b' and suffix == '_efficientsam-init')}
    base_keys = {'model.backbone.net.arch', 'train.init_checkpoint', 'train.output_dir'}
    for suffix in ('', '_step-lr'):
        assert differing_keys([lazy[arch, suffix] for arch in TASK_ARCHS]) == base_keys
    for arch in TASK_ARCHS:  # the step variant: its lr and its own lr_multiplier
        outside_schedule = [{k: v for k, v in lazy[arch, suffix].items() if not k.startswith('lr_multiplier.')}
                            for suffix in ('', '_step-lr')]
        assert differing_keys(outside_schedule) == {'optimizer.lr', 'train.output_dir'}
    for arch in ('ti', 's'):
        assert differing_keys([lazy[arch, ''], lazy[arch, '_efficientsam-init']]) == {'train.init_checkpoint',
                                                                                      'train.output_dir'}
