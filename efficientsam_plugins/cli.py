"""What every tool in ``tools/`` shares: one ``error: ...`` line for a user's mistake, argparse
types, and the benchmarks' timing.

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
                  'efficientsam_plugins.models.sami.feature_cache': 'FeatureCacheError'}

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
