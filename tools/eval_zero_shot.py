"""Zero-shot instance segmentation: prompt EfficientSAM with detector boxes, report mask AP.

    python tools/eval_zero_shot.py --ann-file data/coco/annotations/instances_val2017.json \
        --img-dir data/coco/val2017 --detections vitdet_boxes.json --model efficientsam_ti \
        --out segm_results.json --metrics-out ap.json

The model options are the mask tools' (``--model``, ``--checkpoint``, ``--random-weights``,
``--onnx``, ``--precision``, ``--device``; names as ``efficientsam_plugins.build`` knows them).

``--detections`` is a COCO results JSON (image_id, category_id, bbox [x, y, w, h], score); each
box gives one mask (the highest predicted IoU of the three), with the detection's category and
score. AP uses pycocotools for COCO and the ``lvis`` package (pip install lvis) for LVIS files.
Malformed detections stop the run before any output; outputs are written atomically at the end.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from efficientsam_plugins.cli import add_model_arguments, load_predictor, positive_int, run_tool  # noqa: E402
from efficientsam_plugins.evaluation import (  # noqa: E402
    InstanceDataset,
    PredictorSegmenter,
    evaluate_segmentation,
    load_detections,
    segment_detections,
)
from efficientsam_plugins.fileio import atomic_write_json, check_output_path  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--ann-file', required=True, help='COCO/LVIS instances JSON (ground truth)')
    parser.add_argument('--img-dir', required=True, help='folder of the images')
    parser.add_argument('--detections', required=True, help='COCO-format detection results JSON')
    parser.add_argument('--format', default='auto', choices=['auto', 'coco', 'lvis'])
    add_model_arguments(parser)
    parser.add_argument('--out', required=True, help='write the segmentation results JSON here')
    parser.add_argument('--metrics-out', help='write the AP metrics JSON here')
    parser.add_argument('--score-thr', type=float, default=0.0, help='drop detections scoring below this')
    parser.add_argument('--max-dets-per-image', type=positive_int,
                        help='keep the best N detections per image (default 100 COCO, 300 LVIS)')
    parser.add_argument('--max-queries-per-batch', type=positive_int,
                        help='boxes per model call (default: EfficientSAM 64, SqueezeSAM 8)')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for path in (args.out, args.metrics_out):
        if path:
            check_output_path(path)
    dataset = InstanceDataset(args.ann_file, args.img_dir, args.format)
    max_dets = args.max_dets_per_image or (300 if dataset.format == 'lvis' else 100)
    detections = load_detections(args.detections, dataset, args.score_thr, max_dets)
    batch = {'max_queries_per_batch': args.max_queries_per_batch} if args.max_queries_per_batch else {}
    predictor, trained = load_predictor(args, 'AP figures below are', **batch)
    segmenter = PredictorSegmenter(predictor)
    start = time.perf_counter()
    results = segment_detections(dataset, segmenter, detections, progress=not args.no_progress)
    metrics = evaluate_segmentation(args.ann_file, results, dataset.format, max_dets)
    seconds = time.perf_counter() - start
    print(metrics.pop('summary'))
    print(' '.join(f'{name:>6}' for name in metrics))  # AP in percent under each metric's name
    print(' '.join(f'{100 * value:>6.1f}' for value in metrics.values()))
    print(f'{len(results)} masks on {len(detections)} images in {seconds:.1f}s ({dataset.format} format)'
          + ('' if trained else '; random weights: the AP figures above are meaningless'))
    atomic_write_json(args.out, results)
    if args.metrics_out:
        atomic_write_json(args.metrics_out, dict(
            format=dataset.format, metrics=metrics, num_masks=len(results), seconds=seconds,
            settings=dict(ann_file=args.ann_file, detections=args.detections, model=args.onnx or args.model,
                          backend='onnx' if args.onnx else 'torch', checkpoint=args.checkpoint,
                          trained=trained, score_thr=args.score_thr,
                          max_dets_per_image=max_dets)), indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main, extra_errors=(KeyError,)))  # KeyError: ids the annotation file does not know
