"""The model options every mask-producing tool shares (demo, segment everything, cut-out, export):
``--model``, ``--checkpoint``, ``--random-weights``, ``--onnx``, ``--precision``, ``--device``, and
the one function that turns them into a :class:`~efficientsam_plugins.models.predictor.Predictor`."""
import argparse
import json
import os
import sys

from .cli import torch_device

# --model: (zoo family, config, a checkpoint file name for the random-weights warning)
MODELS = {'ti': ('efficientsam', 'ti', 'efficient_sam_vitt.pt'),
          's': ('efficientsam', 's', 'efficient_sam_vits.pt'),
          'efficientsam_ti': ('efficientsam', 'ti', 'efficient_sam_vitt.pt'),
          'efficientsam_s': ('efficientsam', 's', 'efficient_sam_vits.pt'),
          'squeezesam': ('squeezesam', 'base', 'squeeze_sam.pt')}


def model_choice(text: str):
    """A name of :data:`MODELS`, or an EfficientSAM config ``.json`` file (a custom architecture)."""
    if text not in MODELS and not text.endswith('.json'):
        raise argparse.ArgumentTypeError(f'expected one of {", ".join(MODELS)} or an EfficientSAM config '
                                         f'.json file, got {text!r}')
    return text


def add_model_arguments(parser: argparse.ArgumentParser, default: str = 'ti') -> None:
    parser.add_argument('--model', default=default, type=model_choice,
                        help=f'{", ".join(MODELS)} or an EfficientSAM config .json (default {default})')
    parser.add_argument('--checkpoint', help='checkpoint of --model: path, URL or zoo://NAME '
                        '(default: the released weights from the model zoo)')
    parser.add_argument('--random-weights', action='store_true', help='skip the download, random weights')
    parser.add_argument('--onnx', metavar='DIR', help='run the graphs of tools/export_onnx.py --out DIR '
                        'with onnxruntime instead of PyTorch (--model/--checkpoint then do not apply)')
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'bf16', 'fp16'),
                        help='PyTorch compute precision (bf16 pays on CPUs with AVX-512 BF16/AMX and on GPUs)')
    parser.add_argument('--device', default='cpu', type=torch_device)


def load_predictor(args: argparse.Namespace, what: str = 'masks below are'):
    """``(predictor, trained)``: the predictor the options of :func:`add_model_arguments` name, and
    whether it has trained weights; without them it says so on stderr (``WARNING: running with
    RANDOM weights``) and runs on random ones."""
    if args.onnx:
        if args.checkpoint or args.random_weights:
            raise ValueError('--onnx runs the exported graphs: --checkpoint/--random-weights do not apply')
        from .deploy import load_onnx_predictor
        return load_onnx_predictor(args.onnx), True
    from .models.efficient_sam import EfficientSamPredictor
    from .models.squeeze_sam import SqueezeSamPredictor
    from .zoo import ZooError, entry_for, get_checkpoint
    if args.model in MODELS:
        family, config, example_file = MODELS[args.model]
    else:
        if not os.path.isfile(args.model):
            raise FileNotFoundError(f'--model config file not found: {args.model}')
        with open(args.model, encoding='utf-8') as stream:
            family, config, example_file = 'efficientsam', json.load(stream), 'CHECKPOINT'
        if args.checkpoint is None and not args.random_weights:
            raise ValueError('a config .json has no released weights: give --checkpoint or --random-weights')
    checkpoint = args.checkpoint
    if checkpoint is None and not args.random_weights:
        try:
            checkpoint = get_checkpoint(entry_for(family, config).name)
        except ZooError as err:
            never = " (SqueezeSAM's weights were never published)" if family == 'squeezesam' else ''
            print(f'could not get the released weights: {err}{never}', file=sys.stderr)
    if checkpoint is None:
        network = '' if family == 'squeezesam' else ' (or connect to the network)'
        print(f'WARNING: running with RANDOM weights, so the {what} meaningless; pass '
              f'--checkpoint {example_file}{network} for real ones.', file=sys.stderr)
    predictor_class = SqueezeSamPredictor if family == 'squeezesam' else EfficientSamPredictor
    return predictor_class.from_pretrained(config, checkpoint, args.device, precision=args.precision), bool(checkpoint)
