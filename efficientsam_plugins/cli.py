"""What every command-line tool in ``tools/`` shares: one ``error: ...`` line for a user's mistake,
argparse types, and the benchmarks' timing.

A tool ends with ``sys.exit(run_tool(main))``, so only the command line turns exceptions into
messages; Python callers of ``main`` (and the tests) still get the exception itself. Only exception
types that mean bad input are caught (files that are missing or unreadable, values the code
rejects, a missing optional package, the package's own error classes); any other exception is a
bug and keeps its traceback. The argparse types below reject bad option values before any work,
with argparse's usual usage line.
"""
import argparse
import sys
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple, Type

# OSError covers missing, unreadable and undecodable files (PIL's UnidentifiedImageError is one).
USER_ERRORS: Tuple[Type[BaseException], ...] = (OSError, ValueError, ImportError)

# The package's own errors, by module: looked up only in modules already imported (one that was
# never imported cannot have raised its error, and importing it here could fail, e.g. without torch).
PACKAGE_ERRORS = {
    'efficientsam_plugins.zoo.errors': 'ZooError',
    'efficientsam_plugins.models.sami.feature_cache': 'FeatureCacheError',
}

# What a bad config makes the toolboxes raise: KeyError from a registry asked for a type nobody
# registered (a typo, or a missing custom_imports), SyntaxError from detectron2's LazyConfig.
CONFIG_ERRORS: Tuple[Type[BaseException], ...] = (SyntaxError, KeyError)

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130


def user_error_types(extra: Iterable[Type[BaseException]] = ()) -> Tuple[Type[BaseException], ...]:
    """The exception types a tool reports as ``error: ...``: :data:`USER_ERRORS`, the package's
    errors and ``extra`` (what a tool's libraries raise for bad input, e.g. KeyError for an
    unknown type in a config)."""
    package = tuple(getattr(sys.modules[module], name) for module, name in PACKAGE_ERRORS.items()
                    if module in sys.modules)
    return USER_ERRORS + package + tuple(extra)


def error_message(err: BaseException) -> str:
    """``err`` as one line; KeyError's message without the quotes that ``str`` adds."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    text = ' '.join(line.strip() for line in text.splitlines() if line.strip())
    return text or type(err).__name__


def run_tool(main: Callable[[Optional[Sequence[str]]], Optional[int]], argv: Optional[Sequence[str]] = None,
             extra_errors: Iterable[Type[BaseException]] = ()) -> int:
    """Runs a tool's ``main(argv)`` and returns its exit status: its own (``None`` counts as 0),
    1 after printing ``error: <message>`` for a user's mistake, 130 when interrupted (Ctrl-C)."""
    try:
        status = main(argv)
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED
    except user_error_types(extra_errors) as err:
        print(f'error: {error_message(err)}', file=sys.stderr)
        return EXIT_USER_ERROR
    return status if isinstance(status, int) else 0


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (sizes, counts, batch sizes)."""
    return _bounded_int(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (warm-up runs, worker processes, seeds)."""
    return _bounded_int(text, 0)


def _bounded_int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f'must be at least {minimum}, got {value}')
    return value


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
    elif device.type != 'cpu':
        backend = getattr(torch.backends, device.type, None)
        if backend is not None and hasattr(backend, 'is_available') and not backend.is_available():
            raise argparse.ArgumentTypeError(f'{text!r}: torch has no {device.type} device on this machine')
    return text


def median_seconds(fn: Callable[[], Any], runs: int, warmup: int = 0) -> float:
    """Median seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones, timed by
    ``torch.utils.benchmark`` at torch's current thread count (it synchronises the accelerator, and
    makes two more untimed calls before each timed one)."""
    import torch
    from torch.utils.benchmark import Measurement, Timer
    timer = Timer('fn()', globals={'fn': fn}, num_threads=torch.get_num_threads())
    for _ in range(warmup):
        fn()
    return Measurement.merge([timer.timeit(1) for _ in range(runs)])[0].median
