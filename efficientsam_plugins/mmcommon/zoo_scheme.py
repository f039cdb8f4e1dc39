"""``zoo://NAME`` for mmengine: any ``init_cfg=dict(type='Pretrained', checkpoint='zoo://...')``.

Checkpoints holding a ViT of the core's layout (EfficientSAM) come back as its backbone under plain
names, which is what a backbone's ``init_cfg`` loads; others (SAM teachers, whose position
embedding is a 4-D grid) are returned as stored.
"""
from mmengine.runner import CheckpointLoader

from ..models.checkpoint import load_checkpoint
from ..models.convert import to_backbone_checkpoint


@CheckpointLoader.register_scheme(prefixes='zoo://', force=True)
def load_from_zoo(filename: str, map_location=None):
    checkpoint = load_checkpoint(filename)
    try:
        backbone = to_backbone_checkpoint(checkpoint, 'vit')
    except ValueError:  # no ViT in it
        return checkpoint
    pos_embed = backbone['state_dict'].get('pos_embed')
    return backbone if pos_embed is not None and pos_embed.ndim == 3 else checkpoint
