"""Train with any config of this repository: mmengine-based (mmpretrain, mmdet, mmseg) or a
detectron2 LazyConfig (run by detectron2's trainer:
``--framework detectron2 CONFIG [--num-gpus N] [--resume] [--eval-only] [key=value ...]``).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options key=value ...] [--launcher none|pytorch]

``--resume`` alone continues from the work dir's newest complete checkpoint (an incomplete one, from a
run killed while writing it, is skipped with a warning naming it). Checkpoints are written to a
temporary file and renamed, before older ones are removed. Multi-process:
``tools/dist_train.sh CONFIG N [args]``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from efficientsam_plugins.cli import CONFIG_ERRORS, run_tool  # noqa: E402
from efficientsam_plugins.detectron2.launch import pop_framework  # noqa: E402  (no detectron2 import)


def main(argv=None):
    framework, argv = pop_framework(sys.argv[1:] if argv is None else argv)
    if framework == 'detectron2':
        from efficientsam_plugins.detectron2.launch import main as detectron2_main
        return detectron2_main(argv)
    from efficientsam_plugins.openmmlab.launch import add_common_arguments, load_config, train
    parser = argparse.ArgumentParser(description='Train a model from an mmengine config '
                                     '(--framework detectron2: from a detectron2 LazyConfig)')
    parser.add_argument('config', help='config file')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from CKPT, or from the newest complete checkpoint of the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (CUDA only)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr to the real batch size (the config\'s auto_scale_lr)')
    args = add_common_arguments(parser).parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options,
                      resume=args.resume, amp=args.amp, launcher=args.launcher,
                      auto_scale_lr=args.auto_scale_lr)
    train(cfg)


if __name__ == '__main__':
    sys.exit(run_tool(main, extra_errors=CONFIG_ERRORS))
