"""Convert checkpoints between the official, SAMI and toolbox layouts.

    python tools/convert_checkpoint.py backbone efficient_sam_vitt.pt vitt_mmdet.pth --target mmdet
    python tools/convert_checkpoint.py backbone zoo://efficientsam_ti vitt_d2.pth --target detectron2
    python tools/convert_checkpoint.py backbone work_dirs/sami/epoch_400.pth sami_vit.pth --target vit
    python tools/convert_checkpoint.py official work_dirs/finetune/iter_1000.pth efficient_sam_ft.pt --model ti

``backbone`` keeps only the ViT (from an official EfficientSAM, a SAMI pretraining, an mm* or a
detectron2 checkpoint, or MAE/timm) under the target's prefix: ``backbone.`` in ``state_dict`` for
mmdet / mmseg / mmpretrain, ``backbone.net.`` in ``model`` for detectron2, plain names for vit.
``official`` writes an EfficientSAM trained with this package (e.g. an mmengine finetuning
checkpoint) in the official ``{"model": ...}`` layout that ``build_efficient_sam`` and the official
code load; ``--model`` (an EfficientSAM as ``efficientsam_plugins.build`` names it: ``ti``, ``s``,
a zoo name, an architecture ``.json`` or a finetuning config ``.py``) loads the result back
strictly into that architecture and writes ``<output>.config.json``.
Outputs are written atomically.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.cli import run_tool  # noqa: E402
from efficientsam_plugins.convert import BACKBONE_TARGETS, convert_checkpoint  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    backbone = sub.add_parser('backbone', help='ViT backbone weights for a toolbox')
    backbone.add_argument('source', help='path, URL or zoo://NAME')
    backbone.add_argument('output')
    backbone.add_argument('--target', required=True, choices=sorted(BACKBONE_TARGETS))
    official = sub.add_parser('official', help='EfficientSAM in the official layout')
    official.add_argument('source', help='path, URL or zoo://NAME')
    official.add_argument('output')
    official.add_argument('--model', help='EfficientSAM architecture to verify against: ti, s, a zoo name, '
                          'an architecture .json or a finetuning config .py')
    args = parser.parse_args(argv)
    config = None
    if args.command == 'official' and args.model:
        from efficientsam_plugins.build import resolve_model
        spec = resolve_model(args.model)
        if spec.family != 'efficientsam':
            raise ValueError(f'--model {args.model} is a {spec.family} model; the official layout is EfficientSAM\'s')
        config = spec.config
    count = convert_checkpoint(args.source, args.output, getattr(args, 'target', 'official'), config)
    print(f'wrote {args.output} ({count} tensors' + (', verified against the config)' if config else ')'))
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
