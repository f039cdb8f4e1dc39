"""Peak memory of one ``predict`` call with many box queries (EfficientSAM, random weights).

    python tools/benchmark_many_queries.py                       # 2,000 boxes, 1072x603, Ti
    python tools/benchmark_many_queries.py --boxes 500 --best-only

Prints the output size and the process's peak resident set size (``ru_maxrss``: model, image,
decoder chunks and outputs included) after one :meth:`Predictor.predict` call. Random weights: the
masks mean nothing, only their memory does. ``--best-only`` keeps one candidate per query, the
mode to use for large batches (a third of the output).

Measured with the defaults (AMD EPYC, torch CPU capability AVX2, 2 threads, 5.08 GiB of outputs):
peak RSS 11.37 GiB when the chunks were concatenated, 7.07 GiB with the preallocated outputs.
"""
import argparse
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.build import build_efficient_sam  # noqa: E402
from efficientsam_plugins.cli import positive_int, run_tool, write_benchmark_json  # noqa: E402
from efficientsam_plugins.predictor import EfficientSamPredictor  # noqa: E402


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux reports KiB


@torch.no_grad()
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='ti', choices=['ti', 's'])
    parser.add_argument('--boxes', type=positive_int, default=2000)
    parser.add_argument('--image-width', type=positive_int, default=1072)
    parser.add_argument('--image-height', type=positive_int, default=603)
    parser.add_argument('--best-only', action='store_true', help='keep only the best candidate per query')
    parser.add_argument('--max-queries-per-batch', type=positive_int, default=64)
    parser.add_argument('--json', metavar='PATH', help='also write the rows, the command and the machine to this '
                        'JSON file (docs/benchmarks/ holds the ones the benchmarks page shows)')
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_efficient_sam(args.config)
    predictor = EfficientSamPredictor(model, max_queries_per_batch=args.max_queries_per_batch)
    w, h = args.image_width, args.image_height
    predictor.set_image(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    corners = rng.uniform(0, 1, (args.boxes, 2, 2)) * [w, h]
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)
    before = peak_rss_gib()
    start = time.perf_counter()
    masks, iou, low_res = predictor.predict(boxes=boxes, best_only=args.best_only)
    seconds = time.perf_counter() - start
    output = (masks.nbytes + iou.nbytes + low_res.nbytes) / 2 ** 30
    print(f'EfficientSAM-{args.config.capitalize()} on RANDOM weights (the masks mean nothing), '
          f'{torch.get_num_threads()} CPU threads')
    print(f'{args.boxes} boxes on a {w}x{h} image{", best_only" if args.best_only else ""}: masks '
          f'{tuple(masks.shape)}, outputs {output:.2f} GiB, {seconds:.1f} s')
    print(f'peak RSS: {before:.2f} GiB after set_image, {peak_rss_gib():.2f} GiB after predict')
    if args.json:
        write_benchmark_json(args.json, 'tools/benchmark_many_queries.py', argv, [{
            'model': f'EfficientSAM-{args.config.capitalize()}', 'boxes': args.boxes, 'image': f'{w}x{h}',
            'best_only': args.best_only, 'max_queries_per_batch': args.max_queries_per_batch,
            'outputs (GiB)': output, 'predict (s)': seconds, 'peak RSS after set_image (GiB)': before,
            'peak RSS after predict (GiB)': peak_rss_gib()}],
            notes='RANDOM weights: the masks mean nothing, only their memory does; one predict call.')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
