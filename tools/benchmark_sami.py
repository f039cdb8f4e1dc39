"""SAMI training-step time on CPU: cached vs online targets, and against mmpretrain's MAE.

    python tools/benchmark_sami.py [--batch-size 16] [--img-size 224] [--steps 5] [--warmup 2]
                                   [--threads N] [--skip-online]

One step is forward + backward + AdamW update of a ViT-Ti student (mask ratio 0.75). The models
take turns step by step (so a busy machine slows them alike); each reports the fastest and the
median of ``--steps`` steps after ``--warmup``, in wall-clock and in process CPU time (the figure
to trust on a shared machine), and the ratios use the fastest. Three models:

* ``sami_cached``: SAMI with targets already in the batch (``teacher_mode='cached'``);
* ``mae``: mmpretrain's MAE with an encoder of the same size (``MAEViT`` ``deit-tiny``) and its
  standard 8-block 512-d decoder and pixel head;
* ``sami_online_sam_vit_b``: SAMI running a SAM ViT-B teacher (random weights) at the student's
  resolution on every batch.

Reports the SAMI(cached)/MAE ratio and the speed-up of cached over online targets.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

import torch  # noqa: E402

from efficientsam_plugins.cli import non_negative_int, positive_int, run_tool, write_benchmark_json  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-size', type=positive_int, default=16)
    parser.add_argument('--img-size', type=positive_int, default=224)
    parser.add_argument('--steps', type=positive_int, default=5)
    parser.add_argument('--warmup', type=non_negative_int, default=2)
    parser.add_argument('--threads', type=positive_int, help='torch threads (default: torch\'s choice)')
    parser.add_argument('--skip-online', action='store_true', help='skip the SAM ViT-B teacher run')
    parser.add_argument('--json', metavar='PATH', help='also write the rows, the command and the machine to this '
                        'JSON file (docs/benchmarks/ holds the ones the benchmarks page shows)')
    return parser.parse_args(argv)


def build_models(img_size, skip_online):
    from mmengine.registry import init_default_scope

    import efficientsam_plugins.openmmlab.mmpretrain  # noqa: F401
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    sami = dict(type='SAMI', mask_ratio=0.75,
                backbone=dict(type='SAMIViT', arch='ti', img_size=img_size, final_norm=True),
                neck=dict(type='CrossAttentionDecoder', in_channels=192, embed_dim=512, depth=8,
                          num_heads=16),
                head=dict(type='SAMIHead', in_channels=512, out_channels=256))
    models = {
        'sami_cached': MODELS.build(dict(sami, teacher_mode='cached')),
        'mae': MODELS.build(dict(
            type='MAE',
            backbone=dict(type='MAEViT', arch='deit-tiny', img_size=img_size, patch_size=16,
                          mask_ratio=0.75),
            neck=dict(type='MAEPretrainDecoder', patch_size=16, in_chans=3, embed_dim=192,
                      decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0),
            head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                      loss=dict(type='PixelReconstructionLoss', criterion='L2')))),
    }
    if not skip_online:
        models['sami_online_sam_vit_b'] = MODELS.build(dict(
            sami, teacher_mode='online',
            target_generator=dict(type='SAMTeacher', arch='vit_b', checkpoint=None)))
    return models


def make_step(model, images, samples):
    """One training step of ``model`` as a closure."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        model.loss(images, samples)['loss'].backward()
        optimizer.step()
        optimizer.zero_grad()
    return step


def time_interleaved(steps, rounds, warmup):
    """``{name: [(wall s, CPU s) per step, ...]}`` with the models taking turns each round."""
    times = {name: [] for name in steps}
    for index in range(warmup + rounds):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            if index >= warmup:
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    models = build_models(args.img_size, args.skip_online)
    grid = args.img_size // 16
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    plain = [DataSample(metainfo=dict(sample_idx=i)) for i in range(args.batch_size)]
    cached = [DataSample(metainfo=dict(sample_idx=i), sami_target=torch.randn(256, grid, grid).half())
              for i in range(args.batch_size)]
    print(f'CPU, {torch.get_num_threads()} threads, batch {args.batch_size}, '
          f'{args.img_size}x{args.img_size}, {args.steps} steps after {args.warmup} warm-up')
    steps = {name: make_step(model, images, cached if name == 'sami_cached' else plain)
             for name, model in models.items()}
    results = {}
    for name, values in time_interleaved(steps, args.steps, args.warmup).items():
        wall, cpu = zip(*values)
        results[name] = dict(wall=min(wall), cpu=min(cpu))
        print(f'  {name:<24} wall: fastest {min(wall) * 1000:8.1f} ms, median '
              f'{statistics.median(wall) * 1000:8.1f} ms | CPU time: fastest {min(cpu) * 1000:8.1f} ms, '
              f'median {statistics.median(cpu) * 1000:8.1f} ms', flush=True)
    for clock in ('wall', 'cpu'):
        ratio = results['sami_cached'][clock] / results['mae'][clock]
        line = f'[{clock}] SAMI (cached targets) / MAE step time: {ratio:.2f}'
        if 'sami_online_sam_vit_b' in results:
            speedup = results['sami_online_sam_vit_b'][clock] / results['sami_cached'][clock]
            line += f'; cached over online (SAM ViT-B teacher) speed-up: {speedup:.2f}x'
        print(line)
    if args.json:
        rows = [{'model': name, 'fastest step wall ms': times['wall'] * 1e3,
                 'fastest step CPU ms': times['cpu'] * 1e3,
                 'CPU time / SAMI cached': times['cpu'] / results['sami_cached']['cpu']}
                for name, times in results.items()]
        write_benchmark_json(args.json, 'tools/benchmark_sami.py', argv, rows,
                             notes=f'One training step (forward, backward, AdamW) of a ViT-Ti student, batch '
                             f'{args.batch_size} at {args.img_size}x{args.img_size}, fastest of {args.steps} steps '
                             f'after {args.warmup} warm-up, the models taking turns; random weights (the SAM ViT-B '
                             'teacher included). CPU time is the figure to compare on a busy machine.')
    return results


if __name__ == '__main__':
    sys.exit(run_tool(main))
