"""OpenMMLab registrations: every class of this package is registered once, under its own name, and the
toolboxes find what is registered in mmengine's root registries."""
import importlib

import pytest

pytest.importorskip('mmengine')

ADAPTERS = ('mmpretrain', 'efficientsam', 'squeezesam', 'mmdet', 'mmseg')


def all_registries():
    """mmengine's root registries and, recursively, every toolbox registry below them."""
    from mmengine.registry import Registry, root
    pending = [value for value in vars(root).values() if isinstance(value, Registry)]
    while pending:
        registry = pending.pop()
        yield registry
        pending.extend(registry._children.values())


@pytest.mark.parametrize('adapter', ADAPTERS)
def test_our_classes_are_registered_once_under_their_own_names(adapter):
    pytest.importorskip(f'efficientsam_plugins.openmmlab.{adapter}')
    seen = {}
    for registry in all_registries():
        for name, obj in registry.module_dict.items():
            if getattr(obj, '__module__', '').startswith('efficientsam_plugins.'):
                assert name == obj.__name__, f'{registry.scope}.{registry.name} registers {obj} as {name!r}'
                assert obj not in seen, f'{obj} registered in {seen[obj]} and {registry.scope}.{registry.name}'
                seen[obj] = f'{registry.scope}.{registry.name}'
    assert seen


@pytest.mark.parametrize('toolbox', ('mmpretrain', 'mmdet', 'mmseg'))
def test_toolboxes_find_the_shared_backbone_neck_and_norm(toolbox):
    pytest.importorskip(f'efficientsam_plugins.openmmlab.{toolbox}')
    from efficientsam_plugins.modeling.vit import LayerNorm2d
    from efficientsam_plugins.openmmlab.backbone import SAMIViT
    from efficientsam_plugins.openmmlab.neck import SAMISimpleFPN

    models = importlib.import_module(f'{toolbox}.registry').MODELS
    for cls in (SAMIViT, SAMISimpleFPN, LayerNorm2d):
        assert models.get(cls.__name__) is cls
    assert models.get('LN2d') is not LayerNorm2d  # one name per class: the old alias is gone
