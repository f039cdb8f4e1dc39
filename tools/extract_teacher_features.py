"""Run a SAMI config's teacher once over its training images and store the features.

    python tools/extract_teacher_features.py CONFIG --out DIR [--image-size N] [--map-size N]
        [--batch-size 16] [--num-workers 4] [--records-per-shard 256] [--device cpu|cuda]
        [--amp] [--verify] [--cfg-options ...] [--launcher none|pytorch]
    torchrun --nproc_per_node N tools/extract_teacher_features.py CONFIG --out DIR --launcher pytorch

Whole images go to the teacher at ``--image-size`` (default: the teacher's fixed resolution, else
its native input, 1024 for SAM: 64x64 maps, so the smallest random-resized crop keeps sharp
targets); ``--map-size`` pools the stored maps to fewer cells (less disk). The map size, its disk
cost (per image, this dataset, ImageNet-1K) and the smallest crop's coverage are printed before
extraction starts. Train from the cache with ``model.teacher_mode='cached'`` and
``LoadSAMITeacherTarget``. A rerun resumes; ``--verify`` re-hashes every shard (exit status 1 if
one is corrupt). The work is done by
:func:`efficientsam_plugins.openmmlab.extract.extract_teacher_features`.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

import torch  # noqa: E402

from efficientsam_plugins.cli import CONFIG_ERRORS, non_negative_int, positive_int, run_tool, torch_device  # noqa: E402


def parse_args(argv=None):
    from efficientsam_plugins.openmmlab.launch import add_common_arguments  # here: run_tool reports a missing mmengine
    parser = argparse.ArgumentParser(description='Cache a SAMI teacher\'s features of a dataset')
    parser.add_argument('config', help='SAMI config (its model.target_generator and training data)')
    parser.add_argument('--out', required=True, help='cache directory (created or resumed)')
    parser.add_argument('--image-size', type=positive_int,
                        help="whole-image input size (default: the teacher's resolution, else its native size)")
    parser.add_argument('--map-size', type=positive_int,
                        help="store maps pooled to this grid (default: the teacher's own grid)")
    parser.add_argument('--batch-size', type=positive_int, default=16)
    parser.add_argument('--num-workers', type=non_negative_int, default=4)
    parser.add_argument('--records-per-shard', type=positive_int, default=256)
    parser.add_argument('--device', type=torch_device, default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', action='store_true', help='run the teacher in fp16 autocast (CUDA)')
    parser.add_argument('--verify', action='store_true', help='re-hash every shard at the end')
    add_common_arguments(parser, options=('cfg-options', 'launcher'))
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    from efficientsam_plugins.openmmlab.extract import extract_teacher_features
    from efficientsam_plugins.openmmlab.launch import load_config
    args = parse_args(argv)
    cfg = load_config(args.config, cfg_options=args.cfg_options, launcher=args.launcher)
    problems = extract_teacher_features(cfg, args.out, args.image_size, args.map_size, args.batch_size,
                                        args.num_workers, args.records_per_shard, args.device, args.amp,
                                        args.verify)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(run_tool(main, extra_errors=CONFIG_ERRORS))
