"""What every tool in ``tools/`` shares: one ``error: ...`` line for a user's mistake, argparse
types, the model options of the mask tools, and the benchmarks' timing and JSON results.

A tool ends with ``sys.exit(run_tool(main))``, so only the command line turns exceptions into
messages; Python callers of ``main`` (and the tests) get the exception itself. Only exception types
that mean bad input are caught; any other exception is a bug and keeps its traceback.
"""
import argparse
import sys
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple, Type

# OSError covers missing, unreadable and undecodable files (PIL's UnidentifiedImageError is one).
USER_ERRORS: Tuple[Type[BaseException], ...] = (OSError, ValueError, ImportError)

# The package's own errors, by module: looked up only in modules already imported (one that was
# never imported cannot have raised its error, and importing it here could fail, e.g. without torch).
PACKAGE_ERRORS = {'efficientsam_plugins.zoo.errors': 'ZooError',
                  'efficientsam_plugins.training.feature_cache': 'FeatureCacheError'}

# What a bad config makes the toolboxes raise: KeyError from a registry asked for a type nobody
# registered (a typo, or a missing custom_imports), SyntaxError from detectron2's LazyConfig.
CONFIG_ERRORS: Tuple[Type[BaseException], ...] = (SyntaxError, KeyError)


def run_tool(main: Callable[[Optional[Sequence[str]]], Optional[int]], argv: Optional[Sequence[str]] = None,
             extra_errors: Iterable[Type[BaseException]] = ()) -> int:
    """Runs a tool's ``main(argv)`` and returns its exit status: its own (``None`` counts as 0),
    1 after printing ``error: <message>`` for a user's mistake (``extra_errors``: what a tool's
    libraries raise for bad input), 130 when interrupted (Ctrl-C)."""
    try:
        status = main(argv)
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    except USER_ERRORS + tuple(extra_errors) + tuple(  # the package's modules main has imported
            getattr(sys.modules[module], name) for module, name in PACKAGE_ERRORS.items()
            if module in sys.modules) as err:
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)  # no quotes
        text = ' '.join(filter(None, map(str.strip, text.splitlines())))
        print(f'error: {text or type(err).__name__}', file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0


def _number(kind: type, ok: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse type rejecting bad values before any work, with argparse's usage line."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not {"an integer" if kind is int else "a number"}') from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f'must be {expected}, got {value}')
        return value
    return parse


positive_int = _number(int, lambda v: v >= 1, 'at least 1')
non_negative_int = _number(int, lambda v: v >= 0, 'at least 0')
fraction = _number(float, lambda v: 0 <= v <= 1, 'in [0, 1]')
positive_fraction = _number(float, lambda v: 0 < v <= 1, 'in (0, 1]')


def torch_device(text: str) -> str:
    """argparse type of ``--device``: a device torch knows and this machine has (so ``cuda`` on a
    machine without a GPU fails at once instead of after loading the data)."""
    import torch
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a torch device (use cpu, cuda or cuda:N)') from None
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f'{text!r}: torch sees no CUDA device on this machine')
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f'{text!r}: this machine has {torch.cuda.device_count()} '
                                             f'CUDA device(s)')
    elif not getattr(getattr(torch.backends, device.type, None), 'is_available', lambda: True)():
        raise argparse.ArgumentTypeError(f'{text!r}: torch has no {device.type} device on this machine')
    return text


def median_seconds(fn: Callable[[], Any], runs: int, warmup: int = 0) -> float:
    """Median seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones, timed by
    ``torch.utils.benchmark`` at torch's current thread count (it synchronises the accelerator;
    ``blocked_autorange`` with no minimum time makes one untimed call before each timed one)."""
    import torch
    from torch.utils.benchmark import Measurement, Timer
    timer = Timer('fn()', globals={'fn': fn}, num_threads=torch.get_num_threads())
    for _ in range(warmup):
        fn()
    return Measurement.merge([timer.blocked_autorange(min_run_time=0) for _ in range(runs)])[0].median


def write_benchmark_json(path: str, tool: str, argv: Optional[Sequence[str]], rows: Sequence[dict],
                         notes: str = '') -> None:
    """Writes a benchmark's ``rows`` (flat dicts, one per table row; keys are the column names, units
    in the name) to ``path`` as JSON, with the command that produced them and the conditions they were
    measured in: date (UTC), CPU model and capability, torch's thread count, torch version, GPU, load
    average. ``notes`` says what the figures are and are not (random weights, tiny inputs, ...).
    docs/hooks.py renders the files of docs/benchmarks/ into the benchmarks page."""
    import datetime
    import os
    import platform
    import shlex

    import torch

    from .fileio import atomic_write_json
    cpu = platform.processor() or platform.machine()
    if os.path.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo', encoding='utf-8') as stream:
            cpu = next((line.split(':', 1)[1].strip() for line in stream if line.startswith('model name')), cpu)
    conditions = dict(
        cpu=cpu, cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu_count=os.cpu_count(),
        threads=torch.get_num_threads(), torch=torch.__version__, python=platform.python_version(),
        gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        load_average=[round(load, 2) for load in os.getloadavg()])
    command = ' '.join(['python', tool, shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    atomic_write_json(path, dict(tool=tool, command=command,
                                 date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                                 conditions=conditions, notes=notes, rows=list(rows)), indent=1)


def model_name(text: str) -> str:
    """argparse type of ``--model``: a name :func:`efficientsam_plugins.build.resolve_model` knows,
    checked before any work (a usage error listing the known names otherwise); a config file is read
    when the model is built, where its errors name the file."""
    from .build import resolve_model
    if text.endswith(('.json', '.py')):
        return text
    try:
        resolve_model(text)
    except (ValueError, OSError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_model_arguments(parser: argparse.ArgumentParser, default: str = 'ti') -> None:
    """The model options every mask tool shares (demo, segment everything, cut-out, export, web demo):
    ``--model``, ``--checkpoint``, ``--random-weights``, ``--onnx``, ``--precision``, ``--device``."""
    parser.add_argument('--model', default=default, type=model_name,
                        help=f'ti, s, squeezesam, a zoo name (efficientsam_ti, efficientsam_s) or a model '
                        f'config .json (default {default}); see efficientsam_plugins.build')
    parser.add_argument('--checkpoint', help='checkpoint of --model: path, URL or zoo://NAME '
                        '(default: the released weights from the model zoo)')
    parser.add_argument('--random-weights', action='store_true', help='skip the download, random weights')
    parser.add_argument('--onnx', metavar='DIR', help='run the graphs of tools/export_onnx.py --out DIR '
                        'with onnxruntime instead of PyTorch (--model/--checkpoint then do not apply)')
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'bf16', 'fp16'),
                        help='PyTorch compute precision (bf16 pays on CPUs with AVX-512 BF16/AMX and on GPUs)')
    parser.add_argument('--device', default='cpu', type=torch_device)


def released_checkpoint(spec) -> Optional[str]:
    """The released weights of a :class:`~efficientsam_plugins.build.ModelSpec` (an architecture
    name means its zoo entry), downloaded and verified, or None with the reason on stderr."""
    from .zoo import ZooError, entry_for, get_checkpoint
    if spec.checkpoint is None and not isinstance(spec.config, str):
        return None
    try:
        return get_checkpoint(spec.checkpoint or entry_for(spec.family, spec.config).name)
    except ZooError as err:
        never = " (SqueezeSAM's weights were never published)" if spec.family == 'squeezesam' else ''
        print(f'could not get the released weights: {err}{never}', file=sys.stderr)
        return None


def load_predictor(args: argparse.Namespace, what: str = 'masks below are', **predictor_kwargs):
    """``(predictor, trained)``: the predictor the options of :func:`add_model_arguments` name, and
    whether it has trained weights; without them it says so on stderr (``WARNING: running with
    RANDOM weights``) and runs on random ones. ``predictor_kwargs`` go to the predictor
    (``max_queries_per_batch``)."""
    from .build import build_predictor, resolve_model
    if args.onnx:
        if args.checkpoint or args.random_weights:
            raise ValueError('--onnx runs the exported graphs: --checkpoint/--random-weights do not apply')
        from .deploy.onnx_export import read_manifest
        predictor = build_predictor(args.onnx, backend='onnx', **predictor_kwargs)
        if read_manifest(args.onnx).get('random_weights', False):  # an export of random weights says so
            print(f'WARNING: {args.onnx} was exported from RANDOM weights, so the {what} meaningless.',
                  file=sys.stderr)
            return predictor, False
        return predictor, True
    spec = resolve_model(args.model)
    if not isinstance(spec.config, str) and args.checkpoint is None and not args.random_weights:
        raise ValueError('a config .json has no released weights: give --checkpoint or --random-weights')
    checkpoint = args.checkpoint
    if checkpoint is None and not args.random_weights:
        checkpoint = released_checkpoint(spec)
    if checkpoint is None:
        network = '' if spec.family == 'squeezesam' else ' (or connect to the network)'
        print(f'WARNING: running with RANDOM weights, so the {what} meaningless; pass '
              f'--checkpoint {spec.released_file}{network} for real ones.', file=sys.stderr)
    predictor = build_predictor(args.model, checkpoint, device=args.device, precision=args.precision,
                                pretrained=False, **predictor_kwargs)
    return predictor, checkpoint is not None
