"""Parameters, FLOPs and latency of EfficientSAM's image encoder and prompt decoder.

    python tools/benchmark.py                         # Ti and S, fused (SDPA) vs eager attention
    python tools/benchmark.py --models ti --attention eager --runs 5

Latency is the median of ``--runs`` timed runs after ``--warmup`` untimed ones, on the device
given (CPU by default, with the torch thread count printed). The decoder is timed through
:class:`EfficientSamPredictor` after ``set_image``: ``per extra box`` is the slope between one box
and ``--queries`` boxes decoded in one call (full-resolution masks included).
"""
import argparse
import os
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.cli import (median_seconds, non_negative_int, positive_int, run_tool,  # noqa: E402
                                      torch_device)
from efficientsam_plugins.models import eager_attention  # noqa: E402
from efficientsam_plugins.models.efficient_sam import EfficientSamPredictor, build_efficient_sam  # noqa: E402


@torch.no_grad()
def benchmark(config: str, attention: str, args) -> dict:
    model = build_efficient_sam(config).to(args.device)
    image = torch.rand(1, 3, model.img_size, model.img_size, device=args.device)
    predictor = EfficientSamPredictor(model, max_queries_per_batch=args.queries)
    frame = (torch.rand(3, args.image_height, args.image_width) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    box = [args.image_width * 0.2, args.image_height * 0.2, args.image_width * 0.7, args.image_height * 0.8]
    encoder = lambda: model.get_image_embeddings(image)  # noqa: E731
    one = lambda: predictor.predict_torch(boxes=[box])  # noqa: E731
    many = lambda: predictor.predict_torch(boxes=[box] * args.queries)  # noqa: E731
    with eager_attention(attention == 'eager'):
        encoder_s = median_seconds(encoder, args.runs, args.warmup)
        predictor.set_image(frame)
        one_s = median_seconds(one, args.runs, args.warmup)
        many_s = median_seconds(many, args.runs, args.warmup)
    flops = []
    with eager_attention():  # the fused kernel is invisible to the FLOP counter
        for fn in (encoder, one):
            with FlopCounterMode(display=False) as counter:
                fn()
            flops.append(counter.get_total_flops())
    return dict(model=f'EfficientSAM-{config.upper()}', attention=attention,
                params=sum(p.numel() for p in model.parameters()),
                encoder_gflops=flops[0] / 1e9, decoder_gflops=flops[1] / 1e9,
                encoder_ms=encoder_s * 1e3, first_box_ms=one_s * 1e3,
                extra_box_ms=(many_s - one_s) / (args.queries - 1) * 1e3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['ti', 's'], choices=['ti', 's'])
    parser.add_argument('--attention', nargs='+', default=['sdpa', 'eager'], choices=['sdpa', 'eager'],
                        help='fused scaled_dot_product_attention and/or the official explicit softmax(QK^T)V')
    parser.add_argument('--image-width', type=positive_int, default=1024, help='original image size for the predictor')
    parser.add_argument('--image-height', type=positive_int, default=683)
    parser.add_argument('--queries', type=positive_int, default=16, help='boxes per call for the per-extra-box slope')
    parser.add_argument('--runs', type=positive_int, default=5)
    parser.add_argument('--warmup', type=non_negative_int, default=2)
    parser.add_argument('--device', default='cpu', type=torch_device)
    args = parser.parse_args(argv)
    if args.queries < 2:
        parser.error('--queries must be at least 2')

    print(f'torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, '
          f'median of {args.runs} runs after {args.warmup} warm-up')
    header = ('| model | attention | params | encoder GFLOPs | decoder GFLOPs/box | encoder ms '
              '(1024x1024) | first box ms | per extra box ms |')
    print(header)
    print('|' + '---|' * header.count(' | ') + '---|')
    rows = []
    for config in args.models:
        for attention in args.attention:
            rows.append(r := benchmark(config, attention, args))
            print(f"| {r['model']} | {r['attention']} | {r['params']:,} | {r['encoder_gflops']:.1f} | "
                  f"{r['decoder_gflops']:.2f} | {r['encoder_ms']:.0f} | {r['first_box_ms']:.1f} | "
                  f"{r['extra_box_ms']:.1f} |", flush=True)
    for config in args.models:
        by_attention = {r['attention']: r for r in rows if r['model'].endswith(config.upper())}
        if {'sdpa', 'eager'} <= set(by_attention):
            speedup = by_attention['eager']['encoder_ms'] / by_attention['sdpa']['encoder_ms']
            print(f'EfficientSAM-{config.upper()}: encoder {speedup:.2f}x faster with fused attention')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
