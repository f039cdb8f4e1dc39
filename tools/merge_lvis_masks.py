"""COCO annotations with each mask replaced by the LVIS mask of the same object, where one overlaps
it strongly (the SqueezeSAM blog's COCO protocol; see efficientsam_plugins/evaluation/lvis_merge.py).

    python tools/merge_lvis_masks.py --coco data/coco/annotations/instances_val2017.json \
        --lvis data/lvis/lvis_v1_val.json --out data/coco/annotations/instances_val2017_lvis.json

The output is a COCO-format file (COCO's ids, categories and crowd regions; replaced annotations
carry ``lvis_id`` and ``lvis_iou``) for tools/eval_promptable.py. Prints how many masks were
replaced and how many would be at other thresholds; ``--report`` writes that as JSON.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from efficientsam_plugins.cli import positive_fraction, run_tool  # noqa: E402
from efficientsam_plugins.evaluation.dataset import read_json  # noqa: E402
from efficientsam_plugins.evaluation.lvis_merge import DEFAULT_MIN_IOU, merge_lvis_masks  # noqa: E402
from efficientsam_plugins.fileio import atomic_write_json, check_output_path  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--coco', required=True, help='COCO instances JSON (e.g. instances_val2017.json)')
    parser.add_argument('--lvis', required=True, help='LVIS annotations JSON of the same images (lvis_v1_val.json)')
    parser.add_argument('--min-iou', type=positive_fraction, default=DEFAULT_MIN_IOU,
                        help=f'mask IoU a COCO/LVIS pair needs to count as one object (default {DEFAULT_MIN_IOU})')
    parser.add_argument('--out', required=True, help='merged COCO-format JSON to write')
    parser.add_argument('--report', help='also write the counts as JSON here')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for path in (args.out, args.report):
        if path:
            check_output_path(path)
    coco, lvis = read_json(args.coco, 'COCO annotation file'), read_json(args.lvis, 'LVIS annotation file')
    merged, report = merge_lvis_masks(coco, lvis, args.min_iou)
    atomic_write_json(args.out, merged)
    print(f'{report["replaced"]} of {report["coco_non_crowd_masks"]} non-crowd COCO masks replaced by LVIS '
          f'masks (mask IoU >= {args.min_iou}); {report["images_in_lvis"]} of {report["coco_images"]} '
          f'images are in the LVIS file ({report["masks_on_lvis_images"]} masks on them)')
    print('masks whose best LVIS overlap reaches IoU t: ' + ', '.join(
        f'{t}: {n}' for t, n in report['best_iou_at_least'].items()))
    if args.report:
        atomic_write_json(args.report, dict(coco=args.coco, lvis=args.lvis, out=args.out, **report), indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
