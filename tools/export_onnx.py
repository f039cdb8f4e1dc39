"""Export EfficientSAM or SqueezeSAM to ONNX, in the contract a deployment client speaks.

    python tools/export_onnx.py --model efficientsam_ti --out onnx/efficientsam_ti   # zoo weights
    python tools/export_onnx.py --model efficientsam_ti --contract sam --out onnx/efficientsam_ti_sam
    python tools/export_onnx.py --model s --checkpoint efficient_sam_vits.pt --out onnx/s --quantize int8
    python tools/export_onnx.py --model squeezesam --checkpoint squeeze_sam.pt --out onnx/squeezesam

``--model`` is any name of the model registry (``efficientsam_plugins.build``): ``ti``, ``s``,
``squeezesam`` (random weights unless ``--checkpoint``), a zoo entry (``efficientsam_ti``,
``efficientsam_s``, user manifests: its weights, downloaded once) or a config ``.json`` / training
``.py`` file. ``--random-weights`` exports a zoo entry's architecture on random weights.

Contracts (docs/deployment.md): the default for EfficientSAM is the official two-graph export
(``encoder.onnx`` + ``decoder.onnx``, which osam/labelme, samexporter and the official example run),
plus ``decoder_heads.onnx`` for ``efficientsam_plugins.deploy.load_onnx_predictor(DIR)``;
``--contract sam`` writes graphs AnyLabeling / X-AnyLabeling load as a ``segment_anything`` model,
with the model YAML to pick in the tool; SqueezeSAM has one graph (``squeeze_sam.onnx``), which no
client's contract can carry. The folder is replaced only when the new export is complete.
Needs the ``[export]`` extra: ``pip install 'efficientsam_plugins[export]'``.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.cli import run_tool  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True,
                        help='a model-registry name (ti, s, squeezesam, a zoo entry) or a config .json/.py file')
    parser.add_argument('--checkpoint', help='weights instead of the ones the name brings: path, URL or zoo://NAME')
    parser.add_argument('--random-weights', action='store_true',
                        help="a zoo entry's architecture on random weights (for benchmarks; masks are meaningless)")
    parser.add_argument('--contract', choices=['efficientsam', 'sam', 'opencv', 'squeezesam'],
                        help="graph contract (default: the model's own: efficientsam, or squeezesam); "
                             'sam: AnyLabeling / X-AnyLabeling; opencv: one static graph for cv2.dnn')
    parser.add_argument('--out', required=True, metavar='DIR', help='folder for the graphs and export.json')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset, 17..20 (default 17)')
    parser.add_argument('--quantize', choices=['int8'], help='also write int8 (dynamic) quantized heavy graphs')
    args = parser.parse_args(argv)
    if args.checkpoint and args.random_weights:
        parser.error('give --checkpoint or --random-weights, not both')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from efficientsam_plugins.build import build_model, resolve_model
    from efficientsam_plugins.deploy.onnx_export import check_out_dir, check_request, export_onnx
    from efficientsam_plugins.modeling.efficient_sam import resolve_config as efficient_sam_config
    from efficientsam_plugins.modeling.squeeze_sam import resolve_config as squeeze_sam_config
    spec = resolve_model(args.model)
    # Before any weights are loaded: what the export would refuse after them.
    check_request(spec.family, args.contract, args.opset, args.quantize)
    check_out_dir(args.out)
    config = (efficient_sam_config if spec.family == 'efficientsam' else squeeze_sam_config)(spec.config)
    random_weights = args.checkpoint is None and (args.random_weights or spec.checkpoint is None)
    model = build_model(args.model, args.checkpoint, pretrained=not args.random_weights)
    if random_weights:
        print('WARNING: exporting RANDOM weights: the masks of these graphs are meaningless (give --checkpoint '
              f'{spec.released_file}, or a zoo name such as efficientsam_ti)', file=sys.stderr)
    name = os.path.splitext(os.path.basename(spec.name))[0]
    start = time.perf_counter()
    manifest = export_onnx(model, args.out, args.contract, args.opset, args.quantize, config=config, name=name,
                           random_weights=random_weights)
    files = sorted(manifest['sha256'])
    sizes = ', '.join(f'{file} ({os.path.getsize(os.path.join(args.out, file)) / 2 ** 20:.1f} MiB)' for file in files)
    extra = f', {manifest["tool_config"]}' if 'tool_config' in manifest else ''
    print(f'wrote {sizes}{extra} and export.json ({manifest["contract"]} contract) to {args.out} '
          f'in {time.perf_counter() - start:.1f}s')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
