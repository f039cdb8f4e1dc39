"""CPU/GPU latency of the ViTDet SAMI backbones: backbone + pyramid, and whole Mask R-CNN inference.

    python tools/benchmark_vitdet.py                 # Ti, S, B at 1024x1024
    python tools/benchmark_vitdet.py --variants ti --runs 3

Builds the models of ``configs/vitdet/sami_{variant}_coco.py`` (random weights) and reports the
median of ``--runs`` timed forwards after ``--warmup`` untimed ones.
"""
import argparse
import os
import sys

import torch

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, REPO)
from efficientsam_plugins.cli import (  # noqa: E402
    median_seconds,
    non_negative_int,
    positive_int,
    run_tool,
    torch_device,
    write_benchmark_json,
)


@torch.no_grad()
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variants', nargs='+', default=['ti', 's', 'b'], choices=['ti', 's', 'b'])
    parser.add_argument('--size', type=positive_int, default=1024)
    parser.add_argument('--runs', type=positive_int, default=3)
    parser.add_argument('--warmup', type=non_negative_int, default=1)
    parser.add_argument('--device', default='cpu', type=torch_device)
    parser.add_argument('--json', metavar='PATH', help='also write the rows, the command and the machine to this '
                        'JSON file (docs/benchmarks/ holds the ones the benchmarks page shows)')
    args = parser.parse_args(argv)

    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import efficientsam_plugins.openmmlab.mmdet  # noqa: F401
    init_default_scope('mmdet')

    print(f'torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, '
          f'{args.size}x{args.size}, median of {args.runs} runs after {args.warmup} warm-up')
    print('| backbone | params (backbone+neck) | backbone+pyramid ms | Mask R-CNN inference ms/image |')
    print('|---|---|---|---|')
    rows = []
    for variant in args.variants:
        cfg = Config.fromfile(os.path.join(REPO, 'configs', 'vitdet', f'sami_{variant}_coco.py'))
        cfg.model.backbone.init_cfg = None
        model = MODELS.build(cfg.model).to(args.device).eval()
        image = torch.rand(1, 3, args.size, args.size, device=args.device)
        sample = DetDataSample(metainfo=dict(img_shape=(args.size, args.size), ori_shape=(args.size, args.size),
                                             scale_factor=(1.0, 1.0), batch_input_shape=(args.size, args.size)))
        features = median_seconds(lambda m=model, x=image: m.extract_feat(x), args.runs, args.warmup)
        whole = median_seconds(lambda m=model, x=image, s=sample: m.predict(x, [s]), args.runs, args.warmup)
        params = sum(p.numel() for p in list(model.backbone.parameters()) + list(model.neck.parameters()))
        print(f'| SAMI-{variant.upper()} | {params / 1e6:.1f} M | {features * 1e3:.0f} | {whole * 1e3:.0f} |',
              flush=True)
        rows.append({'backbone': f'SAMI-{variant.upper()}', 'input': f'{args.size}x{args.size}',
                     'params backbone+pyramid (M)': params / 1e6, 'backbone+pyramid ms': features * 1e3,
                     'Mask R-CNN inference ms/image': whole * 1e3})
    if args.json:
        write_benchmark_json(args.json, 'tools/benchmark_vitdet.py', argv, rows,
                             notes=f'Random weights (speed does not depend on them), batch 1, device {args.device}; '
                             f'median of {args.runs} runs after {args.warmup} warm-up.')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
