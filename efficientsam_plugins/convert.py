"""Any supported checkpoint to the core ViT's weights, and the converter CLI's work.

Layouts are told apart by where ``patch_embed.proj.weight`` sits: ``image_encoder.`` (official
EfficientSAM, SAM with its ``[1, H, W, C]`` position grid), ``backbone.`` (SAMI, mm*),
``backbone.net.`` (detectron2), none (MAE, timm, this package's ViT). Position embeddings and
relative-position tables are resized to the model's; heads, decoders, tokens and (unless the model
has one) SAM's neck are dropped. Anything else that does not fit is an error naming the keys.
"""
import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from .build import build_efficient_sam
from .checkpoint import CheckpointSource, check_state_dict, extract_state_dict, load_checkpoint, save_checkpoint
from .fileio import atomic_write_json
from .modeling.efficient_sam import resolve_config
from .modeling.vit import ViT, resize_abs_pos, resize_rel_pos

VIT_PREFIXES = ('backbone.net.', 'image_encoder.', 'backbone.', 'encoder.', 'module.', '')
VIT_PARTS = ('pos_embed', 'patch_embed.', 'blocks.', 'neck.', 'norm.')
BACKBONE_TARGETS = {
    # target: (key holding the state dict, prefix of the ViT inside the detector / classifier)
    'mmdet': ('state_dict', 'backbone.'),
    'mmseg': ('state_dict', 'backbone.'),
    'mmpretrain': ('state_dict', 'backbone.'),
    'detectron2': ('model', 'backbone.net.'),
    'vit': ('state_dict', ''),
}
OFFICIAL_PARTS = ('image_encoder', 'prompt_encoder', 'mask_decoder')
DROPPED_KEYS = ('cls_token', 'mask_token', 'dist_token')
DROPPED_PREFIXES = ('head.', 'fc_norm.', 'decoder', 'pre_logits.')


def find_vit_prefix(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The prefix under which a checkpoint keeps its ViT (see the module docstring)."""
    suffix = 'patch_embed.proj.weight'
    found = sorted({key[:-len(suffix)] for key in state_dict if key.endswith(suffix)})
    candidates = found if len(found) == 1 else [prefix for prefix in VIT_PREFIXES if prefix in found]
    if candidates:
        return candidates[0]
    if found:
        raise ValueError(f'checkpoint holds several ViTs under {found}; pass the prefix to load')
    raise ValueError(f'checkpoint holds no ViT: no key ends with "{suffix}"; first keys: {sorted(state_dict)[:6]}')


def _dropped(name: str) -> bool:
    """Heads, decoders and tokens: in checkpoints, never in the core ViT."""
    return name in DROPPED_KEYS or name.startswith(DROPPED_PREFIXES)


def _fit_pos_embed(pos_embed: torch.Tensor, target: torch.Tensor, has_cls: bool) -> torch.Tensor:
    """A position embedding (``[1, (1+)S*S, C]`` or SAM's ``[1, H, W, C]``) to the model's shape."""
    flat = pos_embed.flatten(1, 2) if pos_embed.ndim == 4 else pos_embed
    source_cls = math.isqrt(flat.shape[1]) ** 2 != flat.shape[1]
    size = math.isqrt(target.shape[1] - int(has_cls))
    resized = resize_abs_pos(flat.float(), source_cls, (size, size)).reshape(1, size * size, -1)
    if has_cls:
        cls = flat[:, :1].float() if source_cls else torch.zeros_like(resized[:, :1])
        resized = torch.cat([cls, resized], 1)
    return resized.to(pos_embed.dtype)


def vit_state_dict(checkpoint: Mapping[str, Any], model: ViT, prefix: Optional[str] = None,
                   new_layers: Sequence[str] = ()) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Converts a checkpoint for ``model``; returns ``(state_dict, keys left at initialisation)``: only
    relative-position tables (ViTDet adds them) and keys under ``new_layers`` (layers a subclass adds,
    such as a classifier's ``fc_norm.``) may be missing."""
    source = extract_state_dict(checkpoint)
    prefix = find_vit_prefix(source) if prefix is None else prefix
    own = model.state_dict()
    use_rel_pos = model.blocks[0].attn.use_rel_pos

    def kept(name: str) -> bool:  # the model's keys and unknown ones (reported below), not parts it lacks
        return name in own or not (_dropped(name) or (name.startswith('neck.') and model.neck is None)
                                   or (name.startswith('norm.') and model.norm is None)
                                   or ('.attn.rel_pos_' in name and not use_rel_pos))

    converted = {key[len(prefix):]: value for key, value in source.items()
                 if key.startswith(prefix) and kept(key[len(prefix):])}
    pos = converted.get('pos_embed')
    if pos is not None and pos.shape != own['pos_embed'].shape and pos.shape[-1] == own['pos_embed'].shape[-1]:
        converted['pos_embed'] = _fit_pos_embed(pos, own['pos_embed'], model.pretrain_use_cls_token)
    for name, value in converted.items():
        if '.attn.rel_pos_' in name and name in own and value.shape[1:] == own[name].shape[1:]:
            converted[name] = resize_rel_pos(value, own[name].shape[0])
    initialised = check_state_dict(model, converted, f'checkpoint (ViT under prefix {prefix!r})',
                                   f'a ViT with {model.embed_dim} dims and {model.depth} blocks',
                                   (*[key for key in own if '.attn.rel_pos_' in key], *new_layers))
    return converted, initialised


def load_vit_checkpoint(model: ViT, source: CheckpointSource, prefix: Optional[str] = None,
                        new_layers: Sequence[str] = ()) -> List[str]:
    """Loads any supported checkpoint into ``model``; returns the keys left at initialisation."""
    state_dict, initialised = vit_state_dict(load_checkpoint(source), model, prefix, new_layers)
    model.load_state_dict(state_dict, strict=False)
    return initialised


def load_encoder_weights(encoder: ViT, source: CheckpointSource, prefix: Optional[str] = None,
                         allow_missing: Sequence[str] = (), ignore_unexpected: Sequence[str] = ()) -> List[str]:
    """Loads the ViT of any supported checkpoint into an EfficientSAM image encoder (``prefix``: None
    detects it); returns the keys left at initialisation.

    A SAMI pretraining checkpoint (``backbone.``) loads as it is: its student's final ``norm``, which
    the EfficientSAM encoder lacks (as the released one), is dropped, and the neck, which the student
    lacks, keeps its initialisation when the checkpoint has none (the finetune trains it). Keys under
    ``allow_missing`` may stay initialised; checkpoint keys under ``ignore_unexpected`` are dropped.
    """
    what = f'encoder weights from {source if isinstance(source, (str, os.PathLike)) else "a dict"}'
    state = extract_state_dict(load_checkpoint(source), what=what)
    prefix = find_vit_prefix(state) if prefix is None else prefix
    inner = {prefix + k: v for k, v in extract_state_dict(state, prefix, what).items()  # raises if none
             if not k.startswith(tuple(ignore_unexpected))}
    no_neck = () if any(k.startswith(prefix + 'neck.') for k in inner) else ('neck.',)
    return load_vit_checkpoint(encoder, inner, prefix, (*allow_missing, *no_neck))


def vit_backbone_weights(checkpoint: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The ViT weights of any supported checkpoint under plain names, without SAM's neck (needs no
    model: for converters that only rewrite files)."""
    source = extract_state_dict(checkpoint)
    prefix = find_vit_prefix(source)
    weights = {key[len(prefix):]: value for key, value in source.items() if key.startswith(prefix)}
    return {name: value for name, value in weights.items() if not (
        _dropped(name) or name.startswith('neck.') or (prefix == '' and not name.startswith(VIT_PARTS)))}


def to_backbone_checkpoint(checkpoint: Mapping[str, Any], target: str) -> Dict[str, Any]:
    """A backbone-only checkpoint for ``target`` (mmdet, mmseg, mmpretrain, detectron2 or vit)."""
    if target not in BACKBONE_TARGETS:
        raise ValueError(f'unknown target {target!r}; expected one of {sorted(BACKBONE_TARGETS)}')
    key, prefix = BACKBONE_TARGETS[target]
    return {key: {prefix + name: value for name, value in vit_backbone_weights(checkpoint).items()},
            'meta': {'efficientsam_plugins': f'ViT backbone for {target}'}}


def to_official_efficientsam(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """An EfficientSAM model saved by this package (any prefix) in the official ``{"model": ...}`` layout."""
    source = extract_state_dict(checkpoint)
    prefix = find_vit_prefix(source)
    if not prefix.endswith('image_encoder.'):
        raise ValueError(f'not an EfficientSAM checkpoint: its ViT sits under {prefix!r}, not "image_encoder."')
    outer = prefix[:-len('image_encoder.')]
    return {'model': {key[len(outer):]: value for key, value in source.items()
                      if key.startswith(outer) and key[len(outer):].split('.', 1)[0] in OFFICIAL_PARTS}}


def config_path_of(checkpoint_path: str) -> str:
    """Where the architecture of an official-layout checkpoint is written: ``<path>.config.json``."""
    return os.path.splitext(checkpoint_path)[0] + '.config.json'


def save_export(state_dict: Mapping[str, torch.Tensor], path: str, config: Optional[Mapping[str, Any]] = None) -> str:
    """Writes ``{"model": state_dict}`` atomically and, given ``config`` (a full architecture, as the
    family's ``resolve_config`` returns it), ``<path>.config.json`` beside it."""
    save_checkpoint({'model': {k: v.detach().cpu() for k, v in state_dict.items()}}, path)
    if config is not None:
        atomic_write_json(config_path_of(path), dict(config), indent=2)
    return path


def save_official_efficientsam(state_dict: Mapping[str, torch.Tensor], path: str,
                               config: Optional[Union[str, Mapping[str, Any]]] = None) -> str:
    """:func:`save_export` of an EfficientSAM, ``config`` in any spelling ``build_efficient_sam`` takes."""
    return save_export(state_dict, path, None if config is None else resolve_config(config))


def load_exported(path: str, config: Optional[Union[str, Mapping[str, Any]]] = None):
    """The EfficientSAM of an official-layout checkpoint, reading ``<path>.config.json`` when no
    config is given (what :func:`save_official_efficientsam` wrote beside it)."""
    if config is None:
        sidecar = config_path_of(path)
        if not os.path.isfile(sidecar):
            raise FileNotFoundError(f'no config given and no {sidecar} beside {path}')
        with open(sidecar, encoding='utf-8') as f:
            config = json.load(f)
    return build_efficient_sam(config, path)


def convert_checkpoint(source: CheckpointSource, output: str, target: str,
                       config: Optional[Union[str, Mapping[str, Any]]] = None) -> int:
    """``target``: a key of :data:`BACKBONE_TARGETS` (the ViT only), or ``'official'`` (a whole
    EfficientSAM in the official layout; with ``config`` loaded back strictly into that
    architecture first, and its ``.config.json`` written). Returns the number of tensors written."""
    if os.path.isdir(output):
        raise IsADirectoryError(f'output path is a folder: {output}; give a file name')
    checkpoint = load_checkpoint(source)
    if target != 'official':
        converted = to_backbone_checkpoint(checkpoint, target)
        save_checkpoint(converted, output)
        return len(converted[BACKBONE_TARGETS[target][0]])
    state_dict = to_official_efficientsam(checkpoint)['model']
    if config is not None:
        build_efficient_sam(config, {'model': state_dict})
    save_official_efficientsam(state_dict, output, config)
    return len(state_dict)
