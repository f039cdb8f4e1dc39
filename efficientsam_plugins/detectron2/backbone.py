"""The core ViT and simple feature pyramid as detectron2 ``Backbone`` s (LazyConfig and yacs).

Inside a detector the ViT's parameters are ``backbone.net.<core name>`` (ViTDet's layout), which
the checkpoint converter and the layer-decay lr factor recognise.
"""
import math
from typing import Dict, Sequence

import torch

from ._dependency import require_detectron2

require_detectron2()

from detectron2.config import CfgNode  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import BACKBONE_REGISTRY, Backbone  # noqa: E402

from ..modeling.simple_pyramid import SimpleFeaturePyramid  # noqa: E402
from ..modeling.vit import VITDET_SETTINGS, ViT  # noqa: E402


class SAMIViTNet(ViT, Backbone):
    """The core ViT (same parameters) with ViTDet's settings as defaults, which ``**kwargs`` (the
    core ViT's arguments) override, and detectron2's backbone interface: ``forward`` returns
    ``{out_feature: [B, C, H/16, W/16]}``."""

    def __init__(self, arch: str = 'b', out_feature: str = 'last_feat', **kwargs) -> None:
        super().__init__(arch=arch, **{**VITDET_SETTINGS, **kwargs})
        self.out_feature = out_feature
        self._out_features = [out_feature]
        self._out_feature_channels = {out_feature: self.embed_dim}
        self._out_feature_strides = {out_feature: self.patch_size}

    @property
    def size_divisibility(self) -> int:
        return self.patch_size

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {'size_divisibility': self.patch_size}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {self.out_feature: self.forward_features(x)}


class SAMISimpleFeaturePyramid(Backbone):
    """ViTDet's simple pyramid over ``net``'s map ``in_feature``: ``p2..p5`` for scale factors
    4, 2, 1, 0.5, and with ``top_block`` a max-pooled ``p6`` (Mask R-CNN's RPN uses it).
    ``square_pad``: pad every batch to this square size (1024 for LSJ training); 0 pads only to
    :attr:`size_divisibility`."""

    def __init__(self, net: Backbone, in_feature: str = 'last_feat', out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), top_block: bool = True,
                 square_pad: int = 0) -> None:
        super().__init__()
        if not isinstance(net, Backbone):
            raise TypeError(f'net must be a detectron2 Backbone, got {type(net).__name__}')
        net_shapes = net.output_shape()
        if in_feature not in net_shapes:
            raise ValueError(f'{type(net).__name__} has no output {in_feature!r}; it has {sorted(net_shapes)}')
        in_shape = net_shapes[in_feature]
        self.net = net
        self.in_feature = in_feature
        self.pyramid = SimpleFeaturePyramid(in_shape.channels, out_channels, scale_factors, top_block)
        strides = [int(in_shape.stride / scale) for scale in scale_factors]
        if any(later != 2 * earlier for earlier, later in zip(strides, strides[1:])):
            raise ValueError(f'scale factors {tuple(scale_factors)} give strides {strides}; consecutive '
                             'levels must differ by a factor of 2 (e.g. 4, 2, 1, 0.5)')
        self._size_divisibility = strides[-1]
        if top_block:
            strides.append(2 * strides[-1])
        self._out_features = [f'p{int(math.log2(stride))}' for stride in strides]
        self._out_feature_strides = dict(zip(self._out_features, strides))
        self._out_feature_channels = {name: out_channels for name in self._out_features}
        self._square_pad = square_pad

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    @property
    def padding_constraints(self) -> Dict[str, int]:
        """Read by ``ImageList.from_tensors``: pad to ``square_size`` and to a multiple of the coarsest level."""
        return {'size_divisibility': self._size_divisibility, 'square_size': self._square_pad}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        levels = self.pyramid(self.net(x)[self.in_feature])
        return dict(zip(self._out_features, levels))


_PYRAMID_OPTIONS = ('OUT_CHANNELS', 'SCALE_FACTORS', 'TOP_BLOCK', 'SQUARE_PAD')


def add_sami_config(cfg: CfgNode) -> CfgNode:
    """Adds ``cfg.MODEL.SAMI`` (the backbones' options, ViTDet-B defaults) to a yacs config."""
    vitdet = {key.upper(): list(v) if isinstance(v, tuple) else v for key, v in VITDET_SETTINGS.items()}
    cfg.MODEL.SAMI = CfgNode(dict(ARCH='b', PATCH_SIZE=16, PRETRAIN_IMG_SIZE=224, WITH_CP=False, **vitdet,
                                  OUT_CHANNELS=256, SCALE_FACTORS=[4.0, 2.0, 1.0, 0.5], TOP_BLOCK=True,
                                  SQUARE_PAD=1024))
    return cfg


@BACKBONE_REGISTRY.register()
def build_sami_vit_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> SAMIViTNet:
    """``MODEL.BACKBONE.NAME = "build_sami_vit_backbone"``: the plain ViT (one stride-16 map)."""
    if 'SAMI' not in cfg.MODEL:
        raise KeyError('cfg.MODEL.SAMI is missing: call efficientsam_plugins.detectron2.add_sami_config(cfg) '
                       'before merging a config file that uses the SAMI backbones')
    return SAMIViTNet(in_chans=input_shape.channels, **{  # every other option is a ViT argument, upper-case
        key.lower(): value for key, value in cfg.MODEL.SAMI.items() if key not in _PYRAMID_OPTIONS})


@BACKBONE_REGISTRY.register()
def build_sami_vitdet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> SAMISimpleFeaturePyramid:
    """``MODEL.BACKBONE.NAME = "build_sami_vitdet_backbone"``: ViT + simple pyramid (``p2``-``p6``)."""
    net = build_sami_vit_backbone(cfg, input_shape)
    return SAMISimpleFeaturePyramid(net, **{key.lower(): cfg.MODEL.SAMI[key] for key in _PYRAMID_OPTIONS})
