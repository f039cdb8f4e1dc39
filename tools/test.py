"""Evaluate a checkpoint with any config of this repository: mmengine-based, or a detectron2
LazyConfig (``--framework detectron2 CONFIG CHECKPOINT [--num-gpus N] [key=value ...]``, evaluated
with COCOEvaluator).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options key=value ...]
                                           [--launcher none|pytorch]
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
        from efficientsam_plugins.detectron2.launch import main_eval as detectron2_main_eval
        return detectron2_main_eval(argv)
    from efficientsam_plugins.openmmlab.launch import add_common_arguments, build_runner, load_config
    parser = argparse.ArgumentParser(description='Test a checkpoint with an mmengine config '
                                     '(--framework detectron2: with a detectron2 LazyConfig)')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    args = add_common_arguments(parser).parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options,
                      launcher=args.launcher, checkpoint=args.checkpoint)
    return build_runner(cfg).test()


if __name__ == '__main__':
    sys.exit(run_tool(main, extra_errors=CONFIG_ERRORS))
