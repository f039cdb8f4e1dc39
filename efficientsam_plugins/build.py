"""The one model registry: every tool, the evaluation, the exporter and the benchmarks name a model
through :func:`build_model` / :func:`build_predictor`, as segment-anything's ``sam_model_registry``.

A model is named by

* an architecture: ``'ti'`` / ``'s'`` (EfficientSAM ViT-Ti / ViT-S), ``'squeezesam'`` (SqueezeSAM
  base), random weights unless a checkpoint is given;
* a model-zoo entry of an EfficientSAM or SqueezeSAM architecture: ``'efficientsam_ti'``,
  ``'efficientsam_s'`` or an entry of a user manifest, whose weights are downloaded (once, verified)
  unless another checkpoint is given;
* a config: a dict or ``.json`` file of architecture settings (EfficientSAM's keys, or SqueezeSAM's,
  recognised by its own keys or named by ``"family": "squeezesam"``; the ``<checkpoint>.config.json``
  a training run writes beside its weights is one), or a training config ``.py`` (its
  ``model.model_config``).

Example:
    >>> from efficientsam_plugins import build_model, build_predictor
    >>> model = build_model('ti', pretrained=False)             # EfficientSAM-Ti, random weights
    >>> predictor = build_predictor('efficientsam_ti')          # released weights (downloaded once)
    >>> predictor = build_predictor('squeezesam', 'squeeze_sam.pt', device='cuda', precision='bf16')
"""
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Union

import torch.nn as nn

from .checkpoint import CheckpointSource, extract_state_dict, load_checkpoint, load_state_dict_strict
from .modeling.efficient_sam import DEFAULT_CONFIG as EFFICIENT_SAM_DEFAULT_CONFIG
from .modeling.efficient_sam import EfficientSam, build_image_encoder
from .modeling.efficient_sam import resolve_config as resolve_efficient_sam_config
from .modeling.mask_decoder import MaskDecoder
from .modeling.prompt_encoder import PromptEncoder
from .modeling.squeeze_sam import BASE_CONFIG as SQUEEZE_SAM_BASE_CONFIG
from .modeling.squeeze_sam import SqueezeSam
from .modeling.squeeze_sam import resolve_config as resolve_squeeze_sam_config
from .modeling.transformer import TwoWayTransformer

FAMILIES = ('efficientsam', 'squeezesam')
# architecture names -> (family, config)
ARCHITECTURES = {'ti': ('efficientsam', 'ti'), 's': ('efficientsam', 's'), 'squeezesam': ('squeezesam', 'base')}
# the config of a zoo entry that names its family only (SqueezeSAM has one architecture)
FAMILY_DEFAULT_CONFIGS = {'squeezesam': 'base'}
# keys only a SqueezeSAM config has: a config dict holding one of them is SqueezeSAM's
SQUEEZE_SAM_ONLY_KEYS = frozenset(SQUEEZE_SAM_BASE_CONFIG) - frozenset(EFFICIENT_SAM_DEFAULT_CONFIG)
# the released checkpoint's file name, for messages that tell where real weights come from
RELEASED_FILES = {('efficientsam', 'ti'): 'efficient_sam_vitt.pt', ('efficientsam', 's'): 'efficient_sam_vits.pt',
                  ('squeezesam', 'base'): 'squeeze_sam.pt'}


def _load(model: nn.Module, checkpoint: Optional[CheckpointSource], what: str) -> nn.Module:
    if checkpoint is not None:
        source = 'checkpoint' if isinstance(checkpoint, Mapping) else f'checkpoint {checkpoint}'
        load_state_dict_strict(model, extract_state_dict(load_checkpoint(checkpoint)), f'{what} {source}')
    return model.eval()


def build_efficient_sam(config: Union[str, Mapping[str, Any]] = 'ti',
                        checkpoint: Optional[CheckpointSource] = None) -> EfficientSam:
    """EfficientSAM in eval mode, built as the official builders build it.

    Args:
        config: ``'ti'``, ``'s'`` or a dict of overrides of
            :data:`~efficientsam_plugins.modeling.efficient_sam.DEFAULT_CONFIG`.
        checkpoint: a path, a URL, a ``zoo://`` name or a loaded ``{"model": state_dict}``, loaded
            strictly (every mismatching key named); None: random weights.

    Returns:
        The :class:`~efficientsam_plugins.modeling.efficient_sam.EfficientSam`, on the CPU.

    Raises:
        ValueError: for an unknown config name or key, a value of the wrong kind, or a checkpoint
            that does not match the architecture.
    """
    cfg = resolve_efficient_sam_config(config)
    embed_dim = cfg['neck_dims'][-1]  # the official builder's transformer_output_dim
    grid = cfg['img_size'] // cfg['patch_size']
    model = EfficientSam(
        image_encoder=build_image_encoder(cfg),
        prompt_encoder=PromptEncoder(embed_dim, (grid, grid), (cfg['img_size'], cfg['img_size']),
                                     negative_points=cfg['negative_points']),
        decoder_max_num_input_points=cfg['decoder_max_num_input_points'],
        mask_decoder=MaskDecoder(
            transformer_dim=embed_dim,
            transformer=TwoWayTransformer(cfg['dec_depth'], embed_dim, cfg['dec_heads'], cfg['dec_mlp_dim']),
            num_multimask_outputs=cfg['num_multimask_outputs'], iou_head_depth=cfg['iou_head_depth'] - 1,
            iou_head_hidden_dim=cfg['iou_head_hidden_dim'], upscaling_layer_dims=list(cfg['upscaling'])))
    return _load(model, checkpoint, 'EfficientSAM')


def build_squeeze_sam(config: Union[str, Mapping[str, Any]] = 'base',
                      checkpoint: Optional[CheckpointSource] = None) -> SqueezeSam:
    """SqueezeSAM in eval mode.

    Args:
        config: ``'base'`` or a dict of the official constructor's arguments (plus
            ``negative_click_channel`` / ``previous_mask_channel``).
        checkpoint: as for :func:`build_efficient_sam`, with the official key names.

    Returns:
        The :class:`~efficientsam_plugins.modeling.squeeze_sam.SqueezeSam`, on the CPU.

    Raises:
        ValueError: as :func:`build_efficient_sam`.
    """
    return _load(SqueezeSam(**resolve_squeeze_sam_config(config)), checkpoint, 'SqueezeSAM')


BUILDERS = {'efficientsam': build_efficient_sam, 'squeezesam': build_squeeze_sam}


@dataclass(frozen=True)
class ModelSpec:
    """What a model name resolves to.

    Attributes:
        name: the name as given (a config's path, or ``'config'`` for a dict).
        family: ``'efficientsam'`` or ``'squeezesam'``.
        config: the architecture, as the family's builder takes it.
        checkpoint: the weights the name brings (``zoo://NAME`` for a zoo entry), or None.
    """
    name: str
    family: str
    config: Union[str, Dict[str, Any]]
    checkpoint: Optional[str] = None

    @property
    def released_file(self) -> str:
        """The file name of the released weights of this architecture (``CHECKPOINT`` if none)."""
        config = self.config if isinstance(self.config, str) else None
        return RELEASED_FILES.get((self.family, config), 'CHECKPOINT')


def _zoo_models() -> Dict[str, ModelSpec]:
    from .zoo import list_entries
    return {e.name: ModelSpec(e.name, e.arch.family, e.arch.config or FAMILY_DEFAULT_CONFIGS[e.arch.family],
                              f'zoo://{e.name}')
            for e in list_entries() if e.arch and e.arch.family in FAMILIES
            and (e.arch.config or e.arch.family in FAMILY_DEFAULT_CONFIGS)}


def list_models() -> List[str]:
    """The names :func:`build_model` knows by name (config files aside).

    Returns:
        The architectures (``'ti'``, ``'s'``, ``'squeezesam'``), then the zoo's EfficientSAM and
        SqueezeSAM entries in alphabetical order, user manifests (``EFFICIENTSAM_ZOO_MANIFEST``) included.
    """
    return list(ARCHITECTURES) + sorted(_zoo_models())


def _config_spec(config: Mapping[str, Any], name: str) -> ModelSpec:
    config = dict(config)
    family = config.pop('family', 'squeezesam' if SQUEEZE_SAM_ONLY_KEYS & set(config) else 'efficientsam')
    if family not in FAMILIES:
        raise ValueError(f'{name}: "family" must be one of {", ".join(FAMILIES)}, got {family!r}')
    return ModelSpec(name, family, config)


def resolve_model(name: Union[str, os.PathLike, Mapping[str, Any]]) -> ModelSpec:
    """The family, architecture and default weights of a model name, loading nothing.

    Args:
        name: an architecture (``'ti'``, ``'s'``, ``'squeezesam'``), a zoo entry (``'efficientsam_ti'``,
            with or without ``zoo://``), a config dict, or the path of a config ``.json`` / training
            config ``.py`` (see the module docstring).

    Returns:
        The :class:`ModelSpec`; its ``checkpoint`` is ``zoo://NAME`` for a zoo entry, else None.

    Raises:
        ValueError: for an unknown name (listing the known ones), a config file that is not a
            JSON object, or an unknown ``"family"``.
        FileNotFoundError: for a config file that does not exist.
    """
    if isinstance(name, Mapping):
        return _config_spec(name, 'config')
    text = os.fspath(name)
    if text.endswith(('.json', '.py')):
        if not os.path.isfile(text):
            raise FileNotFoundError(f'model config file not found: {text}')
        if text.endswith('.py'):
            from mmengine.config import Config
            model = Config.fromfile(text).model
            family = 'squeezesam' if 'SqueezeSam' in str(model.get('type', '')) else 'efficientsam'
            config = model.get('model_config') or ARCHITECTURES['squeezesam' if family == 'squeezesam' else 'ti'][1]
            return ModelSpec(text, family, config.to_dict() if hasattr(config, 'to_dict') else config)
        with open(text, encoding='utf-8') as stream:
            try:
                config = json.load(stream)
            except json.JSONDecodeError as err:
                raise ValueError(f'model config {text} is not valid JSON: {err}') from err
        if not isinstance(config, dict):
            raise ValueError(f'model config file {text} must hold a JSON object of architecture settings, '
                             f'got a {type(config).__name__}')
        return _config_spec(config, text)
    if text in ARCHITECTURES:
        return ModelSpec(text, *ARCHITECTURES[text])
    zoo = _zoo_models()
    key = text.removeprefix('zoo://')
    if key in zoo:
        return zoo[key]
    raise ValueError(f'unknown model {text!r}: expected one of {", ".join(list(ARCHITECTURES) + sorted(zoo))}, '
                     f'or a config .json/.py file')


def build_model(name: Union[str, os.PathLike, Mapping[str, Any]] = 'efficientsam_ti',
                checkpoint: Optional[CheckpointSource] = None, pretrained: bool = True) -> nn.Module:
    """A model in eval mode by name.

    Args:
        name: an architecture, a zoo entry or a config (see the module docstring).
        checkpoint: weights to load instead of the ones the name brings (a path, a URL, a ``zoo://``
            name or a loaded state dict).
        pretrained: False builds a zoo entry's architecture on random weights (no download).

    Returns:
        :class:`~efficientsam_plugins.modeling.efficient_sam.EfficientSam` or
        :class:`~efficientsam_plugins.modeling.squeeze_sam.SqueezeSam`, on the CPU.

    Raises:
        ValueError: as :func:`resolve_model` and :func:`build_efficient_sam`.
        efficientsam_plugins.zoo.ZooError: when a zoo entry's weights cannot be downloaded.

    Example:
        >>> model = build_model('ti')  # EfficientSAM-Ti, random weights
    """
    spec = resolve_model(name)
    if checkpoint is None and pretrained:
        checkpoint = spec.checkpoint
    return BUILDERS[spec.family](spec.config, checkpoint)


def build_predictor(name: Union[str, os.PathLike, Mapping[str, Any]] = 'efficientsam_ti',
                    checkpoint: Optional[CheckpointSource] = None, *, backend: str = 'torch', device='cpu',
                    precision: str = 'fp32', pretrained: bool = True, **predictor_kwargs):
    """A :class:`~efficientsam_plugins.predictor.Predictor` by name.

    Args:
        name: for ``backend='torch'`` as :func:`build_model`; for ``backend='onnx'`` the folder
            written by ``tools/export_onnx.py``.
        checkpoint: as :func:`build_model` (torch only).
        backend: ``'torch'`` or ``'onnx'`` (onnxruntime on the exported graphs).
        device: torch device of the model (torch only).
        precision: ``'fp32'``, ``'bf16'`` or ``'fp16'`` compute (torch only).
        pretrained: as :func:`build_model`.
        **predictor_kwargs: passed to the predictor, e.g. ``max_queries_per_batch``.

    Returns:
        An :class:`~efficientsam_plugins.predictor.EfficientSamPredictor` or
        :class:`~efficientsam_plugins.predictor.SqueezeSamPredictor` (torch), or the onnxruntime
        predictor of the export (onnx).

    Raises:
        ValueError: for an unknown backend, or checkpoint/precision/device given with ``backend='onnx'``;
            otherwise as :func:`build_model`.

    Example:
        >>> predictor = build_predictor('ti', pretrained=False)
        >>> predictor.set_image(image)  # doctest: +SKIP
    """
    if backend == 'onnx':
        if checkpoint is not None or precision != 'fp32' or str(device) != 'cpu':
            raise ValueError('backend="onnx" runs the exported graphs with onnxruntime on the CPU: '
                             'checkpoint, precision and device do not apply')
        from .deploy import load_onnx_predictor
        return load_onnx_predictor(os.fspath(name), **predictor_kwargs)
    if backend != 'torch':
        raise ValueError(f'backend must be "torch" or "onnx", got {backend!r}')
    from .predictor import EfficientSamPredictor, SqueezeSamPredictor
    model = build_model(name, checkpoint, pretrained).to(device)
    predictor_class = SqueezeSamPredictor if isinstance(model, SqueezeSam) else EfficientSamPredictor
    return predictor_class(model, precision=precision, **predictor_kwargs)
