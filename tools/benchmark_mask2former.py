"""CPU/GPU latency of the Mask2Former SAMI models at 512x512: backbone + pyramid, and the whole model.

    python tools/benchmark_mask2former.py                 # Ti, S, B at 512x512
    python tools/benchmark_mask2former.py --variants ti --runs 3 --device cuda

Builds the models of ``configs/mask2former/sami_{variant}_ade20k.py`` (random weights, 150 ADE20K
classes) and reports the median of ``--runs`` timed forwards after ``--warmup`` untimed ones.
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
    parser.add_argument('--size', type=positive_int, default=512)
    parser.add_argument('--runs', type=positive_int, default=5)
    parser.add_argument('--warmup', type=non_negative_int, default=1)
    parser.add_argument('--device', default='cpu', type=torch_device)
    parser.add_argument('--json', metavar='PATH', help='also write the rows, the command and the machine to this '
                        'JSON file (docs/benchmarks/ holds the ones the benchmarks page shows)')
    args = parser.parse_args(argv)

    import mmdet.models  # noqa: F401  (Mask2Former's head and pixel decoder)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    import efficientsam_plugins.openmmlab.mmseg  # noqa: F401
    init_default_scope('mmseg')

    print(f'torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, '
          f'{args.size}x{args.size}, median of {args.runs} runs after {args.warmup} warm-up')
    print('| backbone | params (backbone+neck / all) | backbone+pyramid ms | Mask2Former inference ms/image |')
    print('|---|---|---|---|')
    size = (args.size, args.size)
    rows = []
    for variant in args.variants:
        cfg = Config.fromfile(os.path.join(REPO, 'configs', 'mask2former', f'sami_{variant}_ade20k.py'))
        cfg.model.backbone.init_cfg = None
        model = MODELS.build(cfg.model).to(args.device).eval()
        image = torch.rand(1, 3, *size, device=args.device)
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size, batch_input_shape=size))
        features = median_seconds(lambda m=model, x=image: m.extract_feat(x), args.runs, args.warmup)
        whole = median_seconds(lambda m=model, x=image, s=sample: m.predict(x, [s]), args.runs, args.warmup)
        pyramid = sum(p.numel() for p in list(model.backbone.parameters()) + list(model.neck.parameters()))
        total = sum(p.numel() for p in model.parameters())
        print(f'| SAMI-{variant.upper()} | {pyramid / 1e6:.1f} M / {total / 1e6:.1f} M | {features * 1e3:.0f} | '
              f'{whole * 1e3:.0f} |', flush=True)
        rows.append({'backbone': f'SAMI-{variant.upper()}', 'input': f'{args.size}x{args.size}',
                     'params backbone+pyramid (M)': pyramid / 1e6, 'params all (M)': total / 1e6,
                     'backbone+pyramid ms': features * 1e3, 'Mask2Former inference ms/image': whole * 1e3})
    if args.json:
        write_benchmark_json(args.json, 'tools/benchmark_mask2former.py', argv, rows,
                             notes=f'Random weights (speed does not depend on them), 150 ADE20K classes, batch 1, '
                             f'device {args.device}; median of {args.runs} runs after {args.warmup} warm-up.')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
