"""EfficientSAM, SAMI pretraining and SqueezeSAM for OpenMMLab (mmpretrain, mmdet, mmseg) and detectron2.

The entry points, as segment-anything's::

    from efficientsam_plugins import AutomaticMaskGenerator, build_model, build_predictor

``modeling`` holds the ``nn.Module``s (torch only); ``training``, ``deploy``, ``evaluation`` and the
toolbox adapters (``openmmlab``, ``detectron2``, imported on demand) live beside it. The names below
are imported lazily, so ``import efficientsam_plugins.modeling`` loads nothing but torch.
"""
import importlib

__version__ = '0.1.0'

_EXPORTS = {'build_model': 'build', 'build_predictor': 'build', 'list_models': 'build', 'resolve_model': 'build',
            'Predictor': 'predictor', 'EfficientSamPredictor': 'predictor', 'SqueezeSamPredictor': 'predictor',
            'AutomaticMaskGenerator': 'automatic_mask_generator', 'salient_clicks': 'cutout'}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f'.{_EXPORTS[name]}', __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
