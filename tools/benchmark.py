"""Parameters, FLOPs and latency of EfficientSAM's image encoder and prompt decoder, and of
SqueezeSAM (fp32 and int8) beside it.

    python tools/benchmark.py                         # Ti and S, fused (SDPA) vs eager attention
    python tools/benchmark.py --models ti --attention eager --runs 5
    python tools/benchmark.py --models ti s squeezesam --attention sdpa   # + SqueezeSAM fp32 / int8

``--models`` names models as ``efficientsam_plugins.build`` does (``ti``, ``s``, ``squeezesam``, a zoo
name, an architecture ``.json``); EfficientSAM runs on random weights, whose speed is the trained one's.

Latency is the median of ``--runs`` timed runs after ``--warmup`` untimed ones, on the device
given (CPU by default, with the torch thread count printed). The decoder is timed through
:class:`EfficientSamPredictor` after ``set_image``: ``per extra box`` is the slope between one box
and ``--queries`` boxes decoded in one call (full-resolution masks included).

SqueezeSAM has no image encoder to share: every query is a whole network pass at 512x512, timed
the same way (one query, then the slope up to ``--squeezesam-queries``), in fp32 and, with
``--precisions int8``, PT2E int8 lowered by inductor (the first call compiles; it is not timed).
Its weights were never published, so it runs on random weights with BatchNorm statistics of the
bundled COCO train images, or on trained ones given by ``--squeezesam-checkpoint`` (for example the
small stand-in that configs/squeezesam/squeezesam_sa1b_int8-standin.py trains on the bundled
images: name its architecture in ``--models``, e.g. the ``.config.json`` written beside the
weights), calibrated on the same images; the int8 masks are compared with the
fp32 ones (mean IoU) on the bundled val images and dogs.png, four prompts each. The last table
adds it up: Q queries on one image cost EfficientSAM one encoder pass + Q decoder calls,
SqueezeSAM Q passes.
"""
import argparse
import os
import sys
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.build import build_model, resolve_model  # noqa: E402
from efficientsam_plugins.cli import (  # noqa: E402
    median_seconds,
    non_negative_int,
    positive_int,
    run_tool,
    torch_device,
    write_benchmark_json,
)
from efficientsam_plugins.modeling.attention import eager_attention  # noqa: E402
from efficientsam_plugins.predictor import (
    EfficientSamPredictor,  # noqa: E402
    SqueezeSamPredictor,  # noqa: E402
)

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
QUERY_COUNTS = (1, 4, 16, 64)


@torch.no_grad()
def benchmark(name: str, attention: str, args) -> dict:
    model = build_model(name, pretrained=False).to(args.device)
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
    return dict(model=model_label(name), attention=attention,
                params=sum(p.numel() for p in model.parameters()),
                encoder_gflops=flops[0] / 1e9, decoder_gflops=flops[1] / 1e9,
                encoder_ms=encoder_s * 1e3, first_box_ms=one_s * 1e3,
                extra_box_ms=(many_s - one_s) / (args.queries - 1) * 1e3)


def bundled_images(split: str) -> list:
    """Float ``[3, H, W]`` images of data/coco_mini/<split> (val: dogs.png first)."""
    from efficientsam_plugins.evaluation import load_rgb_image
    folder = os.path.join(REPO, 'data', 'coco_mini', split)
    paths = [os.path.join(folder, name) for name in sorted(os.listdir(folder))]
    if split == 'val2017':
        paths.insert(0, os.path.join(REPO, 'tests', 'data', 'efficientsam_tiny', 'dogs.png'))
    return [torch.tensor(load_rgb_image(path)).permute(2, 0, 1).float() / 255 for path in paths]  # a copy: writable


@torch.no_grad()
def int8_agreement(fp32, int8, images, queries: int = 4) -> dict:
    """Int8 against fp32 masks over ``queries`` seeded prompts per image: ``best_iou`` is the mean
    IoU of each model's own best-IoU mask (what a user sees; a different pick counts against int8),
    ``same_candidate`` that of candidate ``k`` with candidate ``k`` over all of them (the network's
    numbers alone), ``flips`` the fraction of prompts whose best-IoU pick differs."""
    from efficientsam_plugins.deploy.quantize import random_prompts

    def mask_ious(a, b):
        a, b = a.flatten(1), b.flatten(1)
        return (a & b).sum(1) / (a | b).sum(1).clamp(min=1)

    generator, best, same, flips = torch.Generator().manual_seed(1), [], [], []
    predictors = SqueezeSamPredictor(fp32, queries), SqueezeSamPredictor(int8, queries)
    for image in images:
        points, labels = random_prompts(*image.shape[-2:], queries, generator)
        boxes = torch.cat([points[0::2, 0], points[0::2, 1]], dim=1)
        masks, picks = [], []
        for predictor in predictors:
            predictor.set_image(image)
            outputs = [predictor.predict_torch(boxes=boxes), predictor.predict_torch(points=points[1::2, :1])]
            masks.append(torch.cat([m for m, _, _ in outputs]))
            picks.append(torch.cat([iou for _, iou, _ in outputs]).argmax(1))
        (a, b), rows = masks, torch.arange(len(picks[0]))
        best.append(mask_ious(a[rows, picks[1]], b[rows, picks[0]]))
        same.append(mask_ious(a.flatten(0, 1), b.flatten(0, 1)))
        flips.append(picks[0] != picks[1])
    return dict(best_iou=float(torch.cat(best).mean()), same_candidate=float(torch.cat(same).mean()),
                flips=float(torch.cat(flips).float().mean()))


def squeeze_sam_trained(name: str, args) -> bool:
    """Whether the SqueezeSAM benchmarked has trained weights (a checkpoint, or a zoo name's)."""
    return bool(args.squeezesam_checkpoint or resolve_model(name).checkpoint)


def model_label(name: str) -> str:
    """``EfficientSAM-TI`` for ``ti`` or ``efficientsam_ti``, else the name as given."""
    spec = resolve_model(name)
    return f'EfficientSAM-{spec.config.upper()}' if isinstance(spec.config, str) else f'EfficientSAM {name}'


@torch.no_grad()
def benchmark_squeeze_sam(name: str, args) -> list:
    """SqueezeSAM rows, per precision: params, MACs and latency per query, int8 agreement."""
    from efficientsam_plugins.deploy.quantize import calibration_inputs, quantize_int8, recalibrate_batchnorm
    torch.manual_seed(0)
    fp32 = build_model(name, args.squeezesam_checkpoint)  # an architecture name alone: random weights
    calibration = calibration_inputs(fp32, bundled_images('train2017'))
    if not squeeze_sam_trained(name, args):  # trained weights keep their own BatchNorm statistics
        recalibrate_batchnorm(fp32, calibration)
    frame = (torch.rand(3, args.image_height, args.image_width) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    box = [args.image_width * 0.2, args.image_height * 0.2, args.image_width * 0.7, args.image_height * 0.8]
    with eager_attention(), FlopCounterMode(display=False) as counter:
        predictor = SqueezeSamPredictor(fp32)
        predictor.set_image(frame)
        predictor.predict_torch(boxes=[box])
    macs = counter.get_total_flops() / 2
    rows = []
    for precision in args.precisions:
        model = fp32
        if precision == 'int8':
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', DeprecationWarning)  # torchao's own imports
                model = quantize_int8(fp32, calibration)
        predictor = SqueezeSamPredictor(model, max_queries_per_batch=args.squeezesam_queries)
        predictor.set_image(frame)
        one = lambda predictor=predictor: predictor.predict_torch(boxes=[box])  # noqa: E731
        many = lambda predictor=predictor: predictor.predict_torch(boxes=[box] * args.squeezesam_queries)  # noqa: E731
        one(), many()  # int8: compiles for both batch sizes
        one_s = median_seconds(one, args.runs, args.warmup)
        many_s = median_seconds(many, args.runs, args.warmup)
        agreement = int8_agreement(fp32, model, bundled_images('val2017')) if precision == 'int8' else None
        rows.append(dict(model='SqueezeSAM', precision=precision, params=sum(p.numel() for p in fp32.parameters()),
                         gmacs_per_query=macs / 1e9, first_query_ms=one_s * 1e3,
                         extra_query_ms=(many_s - one_s) / (args.squeezesam_queries - 1) * 1e3,
                         iou_vs_fp32=agreement))
    return rows


def print_comparison(efficient_sam_rows: list, squeeze_sam_rows: list) -> None:
    """Per-query cost side by side, and the total for Q queries on one image."""
    rows = [dict(name=f"{r['model']} fp32", params=r['params'], once_gmacs=r['encoder_gflops'] / 2,
                 query_gmacs=r['decoder_gflops'] / 2, once_ms=r['encoder_ms'], first_ms=r['first_box_ms'],
                 extra_ms=r['extra_box_ms']) for r in efficient_sam_rows if r['attention'] == 'sdpa']
    rows += [dict(name=f"SqueezeSAM {r['precision']}", params=r['params'], once_gmacs=0.0,
                  query_gmacs=r['gmacs_per_query'], once_ms=0.0, first_ms=r['first_query_ms'],
                  extra_ms=r['extra_query_ms']) for r in squeeze_sam_rows]
    print('\n| model | params | GMACs once per image | GMACs per query | ms once per image | '
          'ms first query | ms per extra query | ' + ' | '.join(f'ms for {q} queries' for q in QUERY_COUNTS) + ' |')
    print('|' + '---|' * (7 + len(QUERY_COUNTS)))
    for r in rows:
        totals = [r['once_ms'] + r['first_ms'] + (q - 1) * r['extra_ms'] for q in QUERY_COUNTS]
        print(f"| {r['name']} | {r['params']:,} | {r['once_gmacs']:.1f} | {r['query_gmacs']:.2f} | "
              f"{r['once_ms']:.0f} | {r['first_ms']:.0f} | {r['extra_ms']:.0f} | "
              + ' | '.join(f'{t:.0f}' for t in totals) + ' |')
    for r in squeeze_sam_rows:
        if r['iou_vs_fp32'] is not None:
            fp32 = next((f for f in squeeze_sam_rows if f['precision'] == 'fp32'), None)
            speedup = (f": {fp32['first_query_ms'] / r['first_query_ms']:.2f}x faster than fp32 for the first query, "
                       f"{fp32['extra_query_ms'] / r['extra_query_ms']:.2f}x per extra query" if fp32 else '')
            a = r['iou_vs_fp32']
            print(f"SqueezeSAM {r['precision']}{speedup}; mean mask IoU against fp32: {a['best_iou']:.3f} "
                  f"best-IoU mask vs best-IoU mask (the earlier single figure), {a['same_candidate']:.3f} "
                  f"candidate for candidate; best-IoU pick differs for {a['flips']:.0%} of prompts")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['ti', 's'],
                        help='ti, s, squeezesam, zoo names or architecture .json files (at most one SqueezeSAM)')
    parser.add_argument('--attention', nargs='+', default=['sdpa', 'eager'], choices=['sdpa', 'eager'],
                        help='fused scaled_dot_product_attention and/or the official explicit softmax(QK^T)V')
    parser.add_argument('--image-width', type=positive_int, default=1024, help='original image size for the predictor')
    parser.add_argument('--image-height', type=positive_int, default=683)
    parser.add_argument('--queries', type=positive_int, default=16, help='boxes per call for the per-extra-box slope')
    parser.add_argument('--runs', type=positive_int, default=5)
    parser.add_argument('--warmup', type=non_negative_int, default=2)
    parser.add_argument('--device', default='cpu', type=torch_device)
    parser.add_argument('--precisions', nargs='+', default=['fp32', 'int8'], choices=['fp32', 'int8'],
                        help='SqueezeSAM precisions (int8: PT2E on CPU, needs torchao and a C++ compiler)')
    parser.add_argument('--squeezesam-checkpoint', metavar='PATH',
                        help='trained weights of the SqueezeSAM in --models (e.g. squeezesam_sa1b.config.json) '
                        'instead of the random-weight stand-in')
    parser.add_argument('--squeezesam-queries', type=positive_int, default=4,
                        help='queries per call for SqueezeSAM\'s per-extra-query slope')
    parser.add_argument('--precision', choices=['fp32', 'fp16', 'bf16'], default='fp32',
                        help='with --device cuda: autocast dtype of the throughput protocol')
    parser.add_argument('--compile', action='store_true', help='with --device cuda: torch.compile the model calls')
    parser.add_argument('--json', metavar='PATH', help='also write the rows, the command and the machine to this '
                        'JSON file (docs/benchmarks/ holds the ones the benchmarks page shows)')
    args = parser.parse_args(argv)
    if torch.device(args.device).type == 'cuda':  # the paper's throughput protocol (Table 8)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from benchmark_throughput import main as throughput_main
        return throughput_main(['--device', args.device, '--precision', args.precision, '--models', *args.models]
                               + ['--compile'] * args.compile + ['--json', args.json] * bool(args.json))
    for flag, value in (('--queries', args.queries), ('--squeezesam-queries', args.squeezesam_queries)):
        if value < 2:
            parser.error(f'{flag} must be at least 2 (the per-extra-query slope needs two calls)')
    families = {name: resolve_model(name).family for name in args.models}
    efficient_sam_names = [name for name in args.models if families[name] == 'efficientsam']
    squeeze_sam_names = [name for name in args.models if families[name] == 'squeezesam']
    if len(squeeze_sam_names) > 1:
        parser.error(f'--models names {len(squeeze_sam_names)} SqueezeSAM models; benchmark one at a time')
    if args.squeezesam_checkpoint and not squeeze_sam_names:
        parser.error('--squeezesam-checkpoint needs a SqueezeSAM in --models (its architecture)')
    if squeeze_sam_names and 'int8' in args.precisions and args.device != 'cpu':
        parser.error('int8 SqueezeSAM runs on the CPU only (use --device cpu or --precisions fp32)')

    print(f'torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, '
          f'median of {args.runs} runs after {args.warmup} warm-up')
    header = ('| model | attention | params | encoder GFLOPs | decoder GFLOPs/box | encoder ms '
              '(1024x1024) | first box ms | per extra box ms |')
    print(header)
    print('|' + '---|' * header.count(' | ') + '---|')
    rows = []
    for name in efficient_sam_names:
        for attention in args.attention:
            rows.append(r := benchmark(name, attention, args))
            print(f"| {r['model']} | {r['attention']} | {r['params']:,} | {r['encoder_gflops']:.1f} | "
                  f"{r['decoder_gflops']:.2f} | {r['encoder_ms']:.0f} | {r['first_box_ms']:.1f} | "
                  f"{r['extra_box_ms']:.1f} |", flush=True)
    for name in efficient_sam_names:
        by_attention = {r['attention']: r for r in rows if r['model'] == model_label(name)}
        if {'sdpa', 'eager'} <= set(by_attention):
            speedup = by_attention['eager']['encoder_ms'] / by_attention['sdpa']['encoder_ms']
            print(f'{model_label(name)}: encoder {speedup:.2f}x faster with fused attention')
    squeeze_sam_rows = benchmark_squeeze_sam(squeeze_sam_names[0], args) if squeeze_sam_names else []
    if squeeze_sam_rows:
        print_comparison(rows, squeeze_sam_rows)
    if args.json:
        trained = squeeze_sam_names and squeeze_sam_trained(squeeze_sam_names[0], args)
        weights = (f'SqueezeSAM: the trained weights of {args.squeezesam_checkpoint or squeeze_sam_names[0]}'
                   if trained else 'SqueezeSAM: random weights, BatchNorm statistics of the bundled train images')
        write_benchmark_json(args.json, 'tools/benchmark.py', argv, rows + squeeze_sam_rows,
                             notes=f'EfficientSAM on random weights (speed does not depend on them); {weights}. '
                             f'Median of {args.runs} runs after {args.warmup} warm-up; per extra box/query: '
                             f'the slope up to {args.queries} (SqueezeSAM {args.squeezesam_queries}) queries.')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
