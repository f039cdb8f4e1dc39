"""Promptable segmentation mIoU of EfficientSAM or SqueezeSAM on a COCO- or LVIS-format dataset.

Every non-crowd ground-truth instance is prompted with its tight box and with 1..K simulated
clicks. ``--protocol paper`` (default, the EfficientSAM paper's): every click uniform in the mask,
seeded; ``--protocol sam``: the centre click, then the centre of the larger error region, a negative
click on false positives where the model has the negative-click input (else the missed region's
centre); ``--click-protocol`` / ``--later-clicks`` override either half (see
efficientsam_plugins/evaluation/clicks.py). The mask with the highest predicted IoU is scored.

    python tools/eval_promptable.py --ann-file data/coco/annotations/instances_val2017.json \
        --img-dir data/coco/val2017 --model efficientsam_ti \
        --prompts box 1 3 --protocol paper --out miou.json --dump-predictions masks.json

    python tools/eval_promptable.py --model squeezesam --checkpoint squeeze_sam.pt \
        --ann-file data/coco/annotations/instances_val2017_lvis.json --img-dir data/coco/val2017 \
        --prompts box 1 3 --protocol sam

The model is named as everywhere (``efficientsam_plugins.build``): ``--model`` ``ti`` / ``s`` /
``squeezesam``, a zoo name (``efficientsam_ti``) or an architecture ``.json`` (e.g. the
``.config.json`` a training run writes beside its ``--checkpoint``); ``--onnx DIR`` evaluates the
graphs of tools/export_onnx.py. Without trained weights (``--random-weights``, or none to be had)
it says plainly that the numbers are meaningless.

(``instances_val2017_lvis.json``: COCO masks upgraded with LVIS ones by tools/merge_lvis_masks.py,
the SqueezeSAM blog's protocol.) Prints the protocol and a table of mIoU (%) overall and per COCO
size; ``--out`` writes both as JSON (fractions).
Output files appear complete at the end of the run or not at all.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from efficientsam_plugins.cli import (  # noqa: E402
    add_model_arguments,
    load_predictor,
    non_negative_int,
    positive_int,
    run_tool,
)
from efficientsam_plugins.evaluation import (  # noqa: E402
    InstanceDataset,
    PredictorSegmenter,
    PromptProtocol,
    evaluate_dataset,
    format_table,
)
from efficientsam_plugins.evaluation.clicks import CLICK_PRESETS, CLICK_PROTOCOLS, LATER_CLICK_PROTOCOLS  # noqa: E402
from efficientsam_plugins.fileio import atomic_write_json, check_output_path  # noqa: E402


def parse_prompts(spec):
    """``['box', '1', '3']`` to ``(True, (1, 3))``."""
    bad = [item for item in spec if item != 'box' and not (item.isdigit() and int(item) > 0)]
    if bad:
        raise ValueError(f'unknown prompt {bad[0]!r}: use "box" or a number of clicks such as 1 or 3')
    return 'box' in spec, tuple(int(item) for item in spec if item != 'box')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--ann-file', required=True, help='COCO/LVIS instances JSON')
    parser.add_argument('--img-dir', required=True, help='folder of the images')
    parser.add_argument('--format', default='auto', choices=['auto', 'coco', 'lvis'])
    add_model_arguments(parser)
    parser.add_argument('--prompts', nargs='+', default=['box', '1', '3'],
                        help='"box" and/or click counts (default: box 1 3)')
    parser.add_argument('--protocol', default='paper', choices=sorted(CLICK_PRESETS),
                        help='paper (default): every click uniform in the mask; sam: centre click, then '
                             'error-region clicks')
    parser.add_argument('--click-protocol', choices=CLICK_PROTOCOLS,
                        help="override the preset's first click: random or center")
    parser.add_argument('--later-clicks', choices=LATER_CLICK_PROTOCOLS,
                        help="override the preset's clicks 2..K: error (centre of the larger error region) "
                             "or random (in the mask)")
    parser.add_argument('--negative-clicks', choices=['auto', 'on', 'off'], default='auto',
                        help='error clicks on false positives are negative: auto = where the model has the '
                             'negative-click input')
    parser.add_argument('--seed', type=non_negative_int, default=0, help='seed of the random clicks')
    parser.add_argument('--max-images', type=positive_int, help='evaluate only the first N images (by id)')
    parser.add_argument('--max-queries-per-batch', type=positive_int,
                        help='queries per model call (default: EfficientSAM 64, SqueezeSAM 8: its '
                             'activations grow with every query)')
    parser.add_argument('--out', help='write the summary JSON here')
    parser.add_argument('--dump-predictions', metavar='FILE',
                        help='write every predicted mask (RLE) with image id, annotation id and prompt')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    box, clicks = parse_prompts(args.prompts)
    protocol = PromptProtocol(box=box, clicks=clicks, preset=args.protocol, click_protocol=args.click_protocol,
                              later_clicks=args.later_clicks, seed=args.seed,
                              negative_clicks=dict(auto=None, on=True, off=False)[args.negative_clicks])
    for path in (args.out, args.dump_predictions):
        if path:
            check_output_path(path)
    dataset = InstanceDataset(args.ann_file, args.img_dir, args.format)
    batch = {'max_queries_per_batch': args.max_queries_per_batch} if args.max_queries_per_batch else {}
    predictor, trained = load_predictor(args, 'mIoU figures below are', **batch)
    segmenter = PredictorSegmenter(predictor)
    image_ids = dataset.image_ids[:args.max_images] if args.max_images else None
    start = time.perf_counter()
    result = evaluate_dataset(dataset, segmenter, protocol, image_ids,
                              keep_masks=bool(args.dump_predictions), progress=not args.no_progress)
    seconds = time.perf_counter() - start
    print(format_table(result.summary, result.protocol))
    print(f'{result.num_images} images in {seconds:.1f}s; {len(result.empty_annotation_ids)} '
          f'non-crowd annotations with an empty mask were skipped')
    if not trained:
        print('(random weights: the mIoU figures above are meaningless)')
    settings = dict(ann_file=args.ann_file, img_dir=args.img_dir, format=dataset.format,
                    model=args.onnx or args.model, backend='onnx' if args.onnx else 'torch',
                    checkpoint=args.checkpoint, trained=trained, prompts=protocol.prompt_names,
                    **result.protocol.settings(), num_images=result.num_images)
    if args.dump_predictions:
        atomic_write_json(args.dump_predictions, dict(settings=settings, predictions=result.records))
    if args.out:
        atomic_write_json(args.out, dict(settings=settings, summary=result.summary,
                                         skipped_empty_annotation_ids=result.empty_annotation_ids,
                                         seconds=seconds), indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main, extra_errors=(KeyError,)))  # KeyError: ids the annotation file does not know
