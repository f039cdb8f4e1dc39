"""Export EfficientSAM (encoder + decoder graphs) or SqueezeSAM (one graph) to ONNX.

    python tools/export_onnx.py --model ti --out onnx/efficientsam_ti            # released weights (zoo)
    python tools/export_onnx.py --model s --checkpoint efficient_sam_vits.pt --out onnx/s --quantize int8
    python tools/export_onnx.py --model squeezesam --checkpoint squeeze_sam.pt --out onnx/squeezesam

The folder gets the graphs and ``export.json``; run them with
``efficientsam_plugins.deploy.load_onnx_predictor(DIR)`` (the common ``set_image`` / ``predict``
interface). Every prompt axis is dynamic: batch, queries and points. ``--config`` overrides the
architecture (a JSON object or a .json file: the keys of the model's builder), e.g. for small test
models. Without ``--checkpoint`` EfficientSAM uses the released weights from the model zoo;
``--random-weights`` exports random weights instead (for benchmarks; the masks are meaningless).
Needs the ``[export]`` extra: ``pip install 'efficientsam_plugins[export]'``.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.cli import run_tool  # noqa: E402

MODELS = ('ti', 's', 'squeezesam')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, choices=MODELS, help='EfficientSAM ti / s, or SqueezeSAM')
    parser.add_argument('--checkpoint', help='checkpoint: path, URL or zoo://NAME (EfficientSAM default: '
                        'the released weights from the model zoo)')
    parser.add_argument('--random-weights', action='store_true', help='export random weights (no checkpoint)')
    parser.add_argument('--config', help='architecture overrides: a JSON object or a .json file')
    parser.add_argument('--out', required=True, metavar='DIR', help='folder for the graphs and export.json')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset, 17..20 (default 17)')
    parser.add_argument('--quantize', choices=['int8'], help='also write int8 (dynamic) quantized heavy graphs')
    args = parser.parse_args(argv)
    if args.checkpoint and args.random_weights:
        parser.error('give --checkpoint or --random-weights, not both')
    return args


def architecture(args: argparse.Namespace):
    """The builder's config: the named model, or it with ``--config`` overrides merged in."""
    if args.config is None:
        return 'base' if args.model == 'squeezesam' else args.model
    from efficientsam_plugins.evaluation.segmenters import parse_model_config
    overrides = parse_model_config(args.config)
    if not isinstance(overrides, dict):
        raise ValueError(f'--config must be a JSON object or a .json file of architecture settings, '
                         f'got {args.config!r}')
    if args.model == 'squeezesam':
        return overrides
    from efficientsam_plugins.modeling.efficient_sam import NAMED_CONFIGS
    return {**NAMED_CONFIGS[args.model], **overrides}


def main(argv=None) -> int:
    args = parse_args(argv)
    from efficientsam_plugins.deploy.onnx_export import (
        SUPPORTED_OPSETS,
        export_efficient_sam,
        export_squeeze_sam,
        require_export_extra,
    )
    # Before loading any weights: what the export would refuse after them.
    if args.opset not in SUPPORTED_OPSETS:
        raise ValueError(f'--opset {args.opset} is not supported; use {SUPPORTED_OPSETS.start}..'
                         f'{SUPPORTED_OPSETS.stop - 1}')
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise NotADirectoryError(f'--out {args.out} is a file, not a folder')
    require_export_extra()
    config = architecture(args)
    checkpoint = args.checkpoint
    if args.model == 'squeezesam':
        from efficientsam_plugins.build import build_squeeze_sam
        from efficientsam_plugins.modeling.squeeze_sam.squeeze_sam import resolve_config
        if checkpoint is None and not args.random_weights:
            raise ValueError("SqueezeSAM's weights were never published: give --checkpoint, or "
                             '--random-weights for a graph with random weights')
        model, export = build_squeeze_sam(config, checkpoint), export_squeeze_sam
    else:
        from efficientsam_plugins.build import build_efficient_sam
        from efficientsam_plugins.modeling.efficient_sam import resolve_config
        if checkpoint is None and not args.random_weights:
            from efficientsam_plugins.zoo import entry_for, get_checkpoint
            checkpoint = get_checkpoint(entry_for('efficientsam', args.model).name)
        model, export = build_efficient_sam(config, checkpoint), export_efficient_sam
    if checkpoint is None:
        print('WARNING: exporting RANDOM weights: the masks of these graphs are meaningless', file=sys.stderr)
    start = time.perf_counter()
    manifest = export(model, args.out, args.opset, args.quantize, config=resolve_config(config))
    files = sorted(set(manifest['graphs'].values()) | set(manifest['int8_graphs'].values()))
    sizes = ', '.join(f'{name} ({os.path.getsize(os.path.join(args.out, name)) / 2 ** 20:.1f} MiB)' for name in files)
    print(f'wrote {sizes} and export.json to {args.out} in {time.perf_counter() - start:.1f}s')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
