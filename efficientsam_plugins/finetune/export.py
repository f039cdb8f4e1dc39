"""Converts a finetuning checkpoint of mmengine to the official EfficientSAM layout.

    python -m efficientsam_plugins.finetune.export work_dirs/run/epoch_5.pth efficientsam_ft.pt \
        --config configs/efficientsam/efficientsam_ti_sa1b.py

``--config`` (a finetuning config, ``ti`` / ``s``, or a JSON object/file of architecture
overrides) makes the converter load the result back strictly and write ``<out>.config.json``.
"""
import argparse
import sys

from ..evaluation.segmenters import parse_model_config
from .weights import convert_mmengine_checkpoint


def architecture_of(spec: str):
    """The architecture config from a finetuning config file or a CLI-style config string."""
    if spec.endswith('.py'):
        from mmengine.config import Config
        return Config.fromfile(spec).model.get('model_config', 'ti')
    return parse_model_config(spec)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='mmengine checkpoint (.pth) of EfficientSamFinetuner')
    parser.add_argument('dst', help='output checkpoint: {"model": state_dict}')
    parser.add_argument('--config', help='finetuning config .py, ti, s, or architecture JSON')
    args = parser.parse_args(argv)
    config = architecture_of(args.config) if args.config else None
    convert_mmengine_checkpoint(args.src, args.dst, config)
    print(f'wrote {args.dst}' + (' (verified against the config)' if config is not None else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
