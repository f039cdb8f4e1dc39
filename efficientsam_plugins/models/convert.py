"""The one checkpoint-conversion module: any supported checkpoint to the core ViT's weights.

Recognised layouts (detected by where ``patch_embed.proj.weight`` sits):

* official EfficientSAM (``image_encoder.``), SAM (``image_encoder.``, ``[1, H, W, C]`` position
  grid), SAMI pretraining / mmpretrain / mmdet / mmseg (``backbone.``), detectron2 ViTDet
  (``backbone.net.``), MAE / timm / this package's ViT (no prefix).

Position embeddings are resized to the model's stored grid, relative-position tables to the
model's lengths; heads, decoders, cls/mask tokens and (unless the model has one) the SAM neck are
dropped. Anything else that does not fit — another width or depth, unknown keys — is an error that
names the keys, never a silent partial load.
"""
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .checkpoint import extract_state_dict, resolve_checkpoint
from .vit import ViT, resize_rel_pos

VIT_PREFIXES = ('backbone.net.', 'image_encoder.', 'backbone.', 'encoder.', 'module.', '')
DROPPED_KEYS = ('cls_token', 'mask_token', 'dist_token')
DROPPED_PREFIXES = ('head.', 'fc_norm.', 'decoder', 'pre_logits.')


def find_vit_prefix(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The prefix under which a checkpoint keeps its ViT (see the module docstring)."""
    suffix = 'patch_embed.proj.weight'
    found = sorted({key[:-len(suffix)] for key in state_dict if key.endswith(suffix)})
    if len(found) == 1:
        return found[0]
    known = [prefix for prefix in VIT_PREFIXES if prefix in found]
    if known:
        return known[0]
    if found:
        raise ValueError(f'checkpoint holds several ViTs under {found}; pass the prefix to load')
    raise ValueError(f'checkpoint holds no ViT: no key ends with "{suffix}"; first keys: {sorted(state_dict)[:6]}')


def _resize_pos_embed(pos_embed: torch.Tensor, target: torch.Tensor, has_cls: bool) -> torch.Tensor:
    """A position embedding (``[1, (1+)S*S, C]`` or SAM's ``[1, H, W, C]``) to the model's shape."""
    if pos_embed.shape == target.shape:
        return pos_embed
    cls_slot = None
    if pos_embed.ndim == 4:
        grid = pos_embed
    else:
        if math.isqrt(pos_embed.shape[1]) ** 2 != pos_embed.shape[1]:
            cls_slot, pos_embed = pos_embed[:, :1], pos_embed[:, 1:]
        size = math.isqrt(pos_embed.shape[1])
        grid = pos_embed.reshape(1, size, size, -1)
    size = math.isqrt(target.shape[1] - int(has_cls))
    resized = F.interpolate(grid.permute(0, 3, 1, 2).float(), size=(size, size), mode='bicubic',
                            align_corners=False).permute(0, 2, 3, 1).reshape(1, size * size, -1)
    if has_cls:
        resized = torch.cat([torch.zeros_like(resized[:, :1]) if cls_slot is None else cls_slot.float(), resized], 1)
    return resized.to(grid.dtype)


def vit_state_dict(checkpoint: Mapping[str, Any], model: ViT, prefix: Optional[str] = None,
                   new_layers: Sequence[str] = ()) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Converts a checkpoint for ``model``; returns ``(state_dict, keys left at initialisation)``.

    Only relative-position tables (ViTDet adds them to plain pretrained ViTs) and the model's keys
    under the prefixes ``new_layers`` (layers a subclass adds on top of the ViT, such as a
    classifier's ``fc_norm.``) may be missing.
    """
    source = extract_state_dict(checkpoint)
    prefix = find_vit_prefix(source) if prefix is None else prefix
    own = model.state_dict()
    converted: Dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in source.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name in own:
            converted[name] = value
        elif name in DROPPED_KEYS or name.startswith(DROPPED_PREFIXES):
            continue
        elif name.startswith('neck.') and model.neck is None:
            continue
        elif name.startswith('norm.') and model.norm is None:
            continue
        elif name.startswith('blocks.') and '.attn.rel_pos_' in name and not model.blocks[0].attn.use_rel_pos:
            continue
        else:
            unexpected.append(name)
    if 'pos_embed' in converted and converted['pos_embed'].shape[-1] == own['pos_embed'].shape[-1]:
        converted['pos_embed'] = _resize_pos_embed(converted['pos_embed'], own['pos_embed'],
                                                   model.pretrain_use_cls_token)
    for name, value in list(converted.items()):
        if '.attn.rel_pos_' in name and value.shape != own[name].shape and value.shape[1:] == own[name].shape[1:]:
            converted[name] = resize_rel_pos(value, own[name].shape[0])
    missing = [k for k in own if k not in converted]
    initialised = [k for k in missing if '.attn.rel_pos_' in k or k.startswith(tuple(new_layers))]
    missing = [k for k in missing if k not in initialised]
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in converted.items() if v.shape != own[k].shape]
    problems = []
    if mismatched:
        problems.append(f'shape mismatches ({"; ".join(mismatched[:4])}{" ..." if len(mismatched) > 4 else ""})')
    if missing:
        problems.append(f'missing keys ({", ".join(missing[:6])}{" ..." if len(missing) > 6 else ""})')
    if unexpected:
        problems.append(f'unexpected keys ({", ".join(unexpected[:6])}{" ..." if len(unexpected) > 6 else ""})')
    if problems:
        raise ValueError(f'checkpoint (ViT under prefix {prefix!r}) does not fit a ViT with '
                         f'{model.embed_dim} dims and {model.depth} blocks: ' + '; '.join(problems))
    return converted, initialised


def load_vit_checkpoint(model: ViT, source: Union[str, os.PathLike, Mapping[str, Any]],
                        prefix: Optional[str] = None, new_layers: Sequence[str] = ()) -> List[str]:
    """Loads any supported checkpoint into ``model``; returns the keys left at initialisation."""
    state_dict, initialised = vit_state_dict(resolve_checkpoint(source), model, prefix, new_layers)
    model.load_state_dict(state_dict, strict=False)
    return initialised


BACKBONE_TARGETS = {
    # target: (key holding the state dict, prefix of the ViT inside the detector / classifier)
    'mmdet': ('state_dict', 'backbone.'),
    'mmseg': ('state_dict', 'backbone.'),
    'mmpretrain': ('state_dict', 'backbone.'),
    'detectron2': ('model', 'backbone.net.'),
    'vit': ('state_dict', ''),
}


def vit_backbone_weights(checkpoint: Mapping[str, Any], keep_neck: bool = False) -> Dict[str, torch.Tensor]:
    """The ViT weights of any supported checkpoint under plain names (``blocks.0.attn.qkv.weight``).

    Drops heads, decoders and tokens as :func:`vit_state_dict` does, and SAM's neck unless
    ``keep_neck``; needs no model, so it serves converters that only rewrite files.
    """
    source = extract_state_dict(checkpoint)
    prefix = find_vit_prefix(source)
    weights = {}
    for key, value in source.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if prefix == '' and not name.startswith(('pos_embed', 'patch_embed.', 'blocks.', 'neck.', 'norm.')):
            continue
        if name in DROPPED_KEYS or name.startswith(DROPPED_PREFIXES) or (name.startswith('neck.') and not keep_neck):
            continue
        weights[name] = value
    return weights


def to_backbone_checkpoint(checkpoint: Mapping[str, Any], target: str) -> Dict[str, Any]:
    """A backbone-only checkpoint for ``target`` (mmdet, mmseg, mmpretrain, detectron2 or vit)."""
    if target not in BACKBONE_TARGETS:
        raise ValueError(f'unknown target {target!r}; expected one of {sorted(BACKBONE_TARGETS)}')
    key, prefix = BACKBONE_TARGETS[target]
    weights = vit_backbone_weights(checkpoint)
    return {key: {prefix + name: value for name, value in weights.items()},
            'meta': {'efficientsam_plugins': f'ViT backbone for {target}'}}


def to_official_efficientsam(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """An EfficientSAM model saved by this package (any prefix) in the official ``{"model": ...}`` layout."""
    source = extract_state_dict(checkpoint)
    prefix = find_vit_prefix(source)
    if not prefix.endswith('image_encoder.'):
        raise ValueError(f'not an EfficientSAM checkpoint: its ViT sits under {prefix!r}, not "image_encoder."')
    outer = prefix[:-len('image_encoder.')]
    model = {key[len(outer):]: value for key, value in source.items()
             if key.startswith(outer) and key[len(outer):].split('.', 1)[0] in
             ('image_encoder', 'prompt_encoder', 'mask_decoder')}
    return {'model': model}


def save_checkpoint_atomic(checkpoint: Mapping[str, Any], path: Union[str, os.PathLike]) -> None:
    """``torch.save`` through a temporary file and a rename: no partial file on failure."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
        torch.save(dict(checkpoint), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
