"""EfficientSAM and SAMI pretraining for OpenMMLab (mmpretrain, mmdet, mmseg) and detectron2.

The pure-PyTorch core lives in :mod:`efficientsam_plugins.models`; the toolbox adapters are
imported on demand (``custom_imports`` in configs), so importing this package needs only torch.
"""
__version__ = '0.1.0'
