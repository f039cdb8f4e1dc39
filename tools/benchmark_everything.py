"""Segment-everything cost: wall time, peak memory and masks kept, one fresh process per case.

    python tools/benchmark_everything.py                       # 1920x1080, Ti, every case
    python tools/benchmark_everything.py --cases grid32 coarse32 --model efficientsam_ti   # released weights

Cases: ``grid16`` / ``grid32`` / ``grid64`` (SAM's point grid), ``coarse32`` (the 32x32 grid
coarse to fine from an 8x8 grid, TinySAM-style) and ``boxes`` (MobileSAMv2-style box prompts; the
bundled COCO image's ground-truth boxes, scaled, stand in for a detector's). The image is that COCO
image resized to ``--size``. Peak memory is each case's own process' maximum resident set size,
as the kernel reports it to ``wait4`` (model, image, decoder batch and kept masks included).
``--model`` names the model as ``efficientsam_plugins.build`` does (``ti`` / ``s`` / ``squeezesam``:
random weights unless ``--checkpoint``; a zoo name such as ``efficientsam_ti``: its weights).
Random weights predict IoUs near 0 and logits near 0, so SAM's thresholds
would keep nothing: the default filters are then relaxed so that masks survive and the
upsampling and RLE paths run.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, REPO)
from efficientsam_plugins.cli import positive_int, run_tool, write_benchmark_json  # noqa: E402

IMAGE = os.path.join(REPO, 'data', 'coco_mini', 'val2017', '000000005001.jpg')
ANNOTATIONS = os.path.join(REPO, 'data', 'coco_mini', 'annotations', 'instances_val2017.json')
CASES = {  # name: (generator settings, what it is)
    'grid16': (dict(points_per_side=16), '16x16 grid'),
    'grid32': (dict(points_per_side=32), '32x32 grid'),
    'grid64': (dict(points_per_side=64), '64x64 grid'),
    'coarse32': (dict(points_per_side=32, coarse_points_per_side=8), '32x32 coarse to fine from 8x8'),
    'boxes': (dict(), 'box prompts (COCO boxes)'),
}
RELAXED = dict(pred_iou_thresh=0.0, stability_score_offset=0.01, stability_score_thresh=0.7, coarse_iou_thresh=0.0)


def detector_boxes(width: int, height: int):
    """The bundled image's COCO boxes as XYXY at ``width x height``: a stand-in for a detector."""
    with open(ANNOTATIONS, encoding='utf-8') as f:
        coco = json.load(f)
    image_id = int(os.path.splitext(os.path.basename(IMAGE))[0])
    info = next(image for image in coco['images'] if image['id'] == image_id)
    sx, sy = width / info['width'], height / info['height']
    return [[x * sx, y * sy, min((x + w) * sx, width), min((y + h) * sy, height)]
            for x, y, w, h in (a['bbox'] for a in coco['annotations'] if a['image_id'] == image_id)]


def run_case(args) -> None:
    """One case in this process; writes its result as JSON to ``args.result``."""
    import numpy as np
    import torch
    from PIL import Image

    from efficientsam_plugins.automatic_mask_generator import AutomaticMaskGenerator
    from efficientsam_plugins.build import build_predictor
    from efficientsam_plugins.image_io import read_image
    torch.set_num_threads(args.threads)
    width, height = args.size
    image = np.asarray(Image.fromarray(read_image(IMAGE)).resize((width, height), Image.BILINEAR))
    predictor = build_predictor(args.model, args.checkpoint, pretrained=False)  # main resolved the weights
    settings, _ = CASES[args.run_case]
    filters = {} if args.checkpoint else RELAXED
    generator = AutomaticMaskGenerator(predictor, points_per_batch=args.points_per_batch,
                                                   output_mode='coco_rle', **{**filters, **settings})
    boxes = detector_boxes(width, height) if args.run_case == 'boxes' else None
    start = time.perf_counter()
    records = generator.generate(image, boxes=boxes)
    seconds = time.perf_counter() - start
    with open(args.result, 'w', encoding='utf-8') as f:
        json.dump(dict(seconds=seconds, masks=len(records), prompts=len(boxes) if boxes else None), f)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    parser.add_argument('--size', type=positive_int, nargs=2, default=(1920, 1080), metavar=('W', 'H'))
    parser.add_argument('--model', default='ti', help='ti (default), s, squeezesam, a zoo name such as '
                        'efficientsam_ti, or an architecture .json')
    parser.add_argument('--checkpoint', help='weights of --model: path, URL or zoo://NAME (default: those of a zoo '
                        'name, else random weights and relaxed filters)')
    parser.add_argument('--points-per-batch', type=positive_int, default=64)
    parser.add_argument('--threads', type=positive_int, default=2, help='torch CPU threads per case')
    parser.add_argument('--json', metavar='PATH', help='also write the rows, the command and the machine to this '
                        'JSON file (docs/benchmarks/ holds the ones the benchmarks page shows)')
    parser.add_argument('--run-case', choices=list(CASES), help=argparse.SUPPRESS)  # the child process
    parser.add_argument('--result', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_case:
        run_case(args)
        return 0
    from efficientsam_plugins.build import resolve_model
    from efficientsam_plugins.checkpoint import checkpoint_path
    source = args.checkpoint or resolve_model(args.model).checkpoint
    args.checkpoint = source and checkpoint_path(source)  # downloaded and verified once, before the cases
    print(f'segment everything, {args.model} '
          f'({"random weights, relaxed filters" if not args.checkpoint else args.checkpoint}), '
          f'{args.size[0]}x{args.size[1]}, points_per_batch {args.points_per_batch}, {args.threads} threads')
    print('| case | wall time (s) | peak RSS (MiB) | masks kept |\n|---|---:|---:|---:|')
    base = [sys.executable, os.path.abspath(__file__), '--size', *map(str, args.size), '--model', args.model,
            '--points-per-batch', str(args.points_per_batch), '--threads', str(args.threads)]
    base += ['--checkpoint', args.checkpoint] if args.checkpoint else []
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for case in args.cases:
            result = os.path.join(folder, f'{case}.json')
            process = subprocess.Popen(base + ['--run-case', case, '--result', result])
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode:
                raise RuntimeError(f'case {case} failed with exit status {process.returncode}')
            with open(result, encoding='utf-8') as f:
                measured = json.load(f)
            label = CASES[case][1] + (f', {measured["prompts"]} boxes' if measured['prompts'] else '')
            print(f'| {label} | {measured["seconds"]:.1f} | {usage.ru_maxrss / 1024:.0f} | {measured["masks"]} |',
                  flush=True)
            rows.append({'case': label, 'image': f'{args.size[0]}x{args.size[1]}', 'wall time (s)': measured['seconds'],
                         'peak RSS (MiB)': usage.ru_maxrss / 1024, 'masks kept': measured['masks']})
    if args.json:
        weights = (f'weights {args.checkpoint}, SAM\'s filters' if args.checkpoint else
                   'RANDOM weights with relaxed filters (pred_iou_thresh 0, stability_score_offset 0.01, '
                   'stability_score_thresh 0.7, coarse_iou_thresh 0), so that masks reach upsampling and RLE: '
                   'the mask counts say nothing about quality')
        write_benchmark_json(args.json, 'tools/benchmark_everything.py', argv, rows,
                             notes=f'model {args.model}, {weights}; points_per_batch '
                             f'{args.points_per_batch}, {args.threads} torch threads, each case in a fresh process, '
                             'peak RSS of that process (wait4).')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
