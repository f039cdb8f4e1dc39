"""Segment everything in an image: SAM-style automatic masks from EfficientSAM, with bounded memory.

    python tools/segment_everything.py photo.jpg --out masks.json --overlay overlay.png
    python tools/segment_everything.py photo.jpg --checkpoint efficient_sam_vits.pt --model s --out m.json
    python tools/segment_everything.py photo.jpg --coarse-points-per-side 8 --out m.json   # faster
    python tools/segment_everything.py photo.jpg --boxes detections.json --out m.json      # detector boxes

``masks.json`` is a list of SAM's records (``segmentation`` as COCO RLE, ``area``, ``bbox`` XYWH,
``predicted_iou``, ``point_coords``, ``stability_score``, ``crop_box``); the overlay paints every
mask in its own colour. ``--boxes`` takes a JSON list of ``[x1, y1, x2, y2]`` pixel boxes (or
``{"boxes": [...]}``). Without ``--checkpoint`` the released weights come from the model zoo; where
that is impossible (offline) or with ``--random-weights`` it runs on random weights and says so.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.cli import (  # noqa: E402  # noqa: E402
    add_model_arguments,
    fraction,
    load_predictor,
    non_negative_int,
    positive_int,
    run_tool,
)
from efficientsam_plugins.fileio import atomic_write_json, check_output_path  # noqa: E402
from efficientsam_plugins.image_io import read_image  # noqa: E402


def read_boxes(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'--boxes file not found: {path}')
    with open(path, encoding='utf-8') as f:
        try:
            boxes = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'--boxes {path} is not JSON: {err}') from err
    boxes = boxes.get('boxes') if isinstance(boxes, dict) else boxes
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.ndim != 2 or array.shape[1] != 4 or not len(array):
        raise ValueError(f'--boxes {path} must hold a non-empty list of [x1, y1, x2, y2] boxes')
    return array


def check_image_output(path: str) -> None:
    if os.path.isdir(path):
        raise IsADirectoryError(f'--overlay {path} is a folder; give a file name such as overlay.png')
    extension = os.path.splitext(path)[1].lower()
    if extension not in Image.registered_extensions():
        raise ValueError(f'--overlay {path}: unknown image extension {extension or "(none)"!r}; use .png')
    check_output_path(path)


def draw_overlay(image: np.ndarray, records, path: str) -> None:
    """Every mask in its own colour over the image, larger masks first so small ones stay visible."""
    from pycocotools import mask as mask_utils

    from efficientsam_plugins.mask_generation import rle_to_mask
    pixels = image.astype(np.float32)
    colours = np.random.default_rng(0).integers(40, 256, (len(records), 3)).astype(np.float32)
    for record, colour in sorted(zip(records, colours), key=lambda pair: -pair[0]['area']):
        rle = record['segmentation']
        mask = (mask_utils.decode({**rle, 'counts': rle['counts'].encode()}).astype(bool)
                if isinstance(rle['counts'], str) else rle_to_mask(rle))
        pixels[mask] = 0.45 * pixels[mask] + 0.55 * colour
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image', help='RGB image')
    parser.add_argument('--out', required=True, help='JSON file of SAM records with COCO RLE masks')
    parser.add_argument('--overlay', help='PNG with every mask in its own colour')
    add_model_arguments(parser)
    parser.add_argument('--points-per-side', default=32, type=positive_int)
    parser.add_argument('--points-per-batch', default=64, type=positive_int)
    parser.add_argument('--crop-n-layers', default=0, type=non_negative_int)
    parser.add_argument('--pred-iou-thresh', default=0.88, type=fraction)
    parser.add_argument('--stability-score-thresh', default=0.95, type=fraction)
    parser.add_argument('--stability-score-offset', default=1.0, type=float)
    parser.add_argument('--box-nms-thresh', default=0.7, type=fraction)
    parser.add_argument('--min-mask-region-area', default=0, type=non_negative_int)
    parser.add_argument('--coarse-points-per-side', type=positive_int,
                        help='coarse-to-fine: decode this grid first, then only uncovered points')
    parser.add_argument('--boxes', help='JSON boxes from a detector, prompted instead of the grid')
    args = parser.parse_args(argv)

    if not os.path.isfile(args.image):
        raise FileNotFoundError(f'image not found: {args.image}')
    if os.path.isdir(args.out):
        raise IsADirectoryError(f'--out {args.out} is a folder; give a file name such as masks.json')
    check_output_path(args.out)
    if args.overlay:
        check_image_output(args.overlay)
    boxes = read_boxes(args.boxes) if args.boxes else None
    image = read_image(args.image)  # upright (EXIF), 8-bit RGB, alpha composited on white

    from efficientsam_plugins.automatic_mask_generator import AutomaticMaskGenerator
    predictor, trained = load_predictor(args)
    generator = AutomaticMaskGenerator(
        predictor, points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
        stability_score_offset=args.stability_score_offset, box_nms_thresh=args.box_nms_thresh,
        crop_n_layers=args.crop_n_layers, min_mask_region_area=args.min_mask_region_area,
        output_mode='coco_rle', coarse_points_per_side=args.coarse_points_per_side)
    start = time.perf_counter()
    records = generator.generate(image, boxes=boxes, progress=True)
    seconds = time.perf_counter() - start
    atomic_write_json(args.out, records)
    if args.overlay:
        draw_overlay(image, records, args.overlay)
    print(f'{len(records)} masks for the {image.shape[1]}x{image.shape[0]} image in {seconds:.1f}s; wrote '
          f'{args.out}' + (f' and {args.overlay}' if args.overlay else '') +
          ('' if trained else ' (random weights: masks are meaningless)'))
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
