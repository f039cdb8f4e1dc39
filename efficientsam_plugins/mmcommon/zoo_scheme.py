"""``zoo://NAME`` for mmengine: any ``init_cfg=dict(type='Pretrained', checkpoint='zoo://...')``.

EfficientSAM entries are converted to their ViT backbone (``backbone.``-free plain names, which is
what a backbone's ``init_cfg`` loads); other entries (SAM teachers) are returned as stored.
"""
from mmengine.runner import CheckpointLoader

from ..models.checkpoint import read_checkpoint
from ..models.convert import to_backbone_checkpoint
from ..zoo import get_checkpoint, get_entry


@CheckpointLoader.register_scheme(prefixes='zoo://', force=True)
def load_from_zoo(filename: str, map_location=None):
    name = filename[len('zoo://'):]
    checkpoint = read_checkpoint(get_checkpoint(name))
    if get_entry(name).format == 'efficientsam':
        return to_backbone_checkpoint(checkpoint, 'vit')
    return checkpoint
