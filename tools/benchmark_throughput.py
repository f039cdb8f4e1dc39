"""Throughput in images per second, the EfficientSAM paper's protocol (Table 8): one box prompt per
image, 1024x1024 input (SqueezeSAM: its 512x512 input), at batch 1 and at the best batch.

    python tools/benchmark_throughput.py --device cuda                    # fp32, SDPA
    python tools/benchmark_throughput.py --device cuda --precision bf16 --compile
    python tools/benchmark_throughput.py --device cpu --tiny              # a functional check in seconds

``--models`` names models as ``efficientsam_plugins.build`` does (default: efficientsam_ti,
efficientsam_s, squeezesam; any architecture, zoo name or architecture ``.json``).

EfficientSAM-Ti/S run ``get_image_embeddings`` + ``predict_masks`` (3 masks, low-resolution logits,
as the paper's decoder outputs them); SqueezeSAM runs its ``forward`` (the whole network, since its
prompt is fused into the input) without upsampling either. Random weights: the speed does not depend
on them. The batch sweep doubles from 1 to ``--max-batch`` (stopping at the first out-of-memory);
``best`` is the batch with the most images/s. A figure is ``batch / median seconds`` of ``--runs``
timed calls after ``--warmup`` (``torch.utils.benchmark``, which synchronises the GPU).
``--precision fp16|bf16`` runs under ``torch.autocast``; on CUDA the half precisions keep
``scaled_dot_product_attention`` on its flash kernel only (an error if a call cannot use it), fp32
lets torch choose. ``--compile`` measures batch 1 and the best eager batch again with the model's call
in ``torch.compile`` (compiled before timing). ``--tiny``: 256x256 inputs (for CPUs and tests; not the protocol).
"""
import argparse
import contextlib
import os
import sys
from typing import Callable, List

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.build import build_model, resolve_model  # noqa: E402
from efficientsam_plugins.cli import (  # noqa: E402
    median_seconds,
    non_negative_int,
    positive_int,
    run_tool,
    torch_device,
    write_benchmark_json,
)
from efficientsam_plugins.modeling.efficient_sam import resolve_config as efficient_sam_config  # noqa: E402
from efficientsam_plugins.modeling.squeeze_sam import SqueezeSam  # noqa: E402
from efficientsam_plugins.modeling.squeeze_sam import resolve_config as squeeze_sam_config  # noqa: E402

DEFAULT_MODELS = ('efficientsam_ti', 'efficientsam_s', 'squeezesam')
# The paper's Table 8 (one A100): images/s by (family, config); SqueezeSAM is not in it.
PAPER_A100 = {('efficientsam', 'ti'): 54.0, ('efficientsam', 's'): 47.0}
# --tiny: each family's full config and its input-size key
TINY_INPUT = {'efficientsam': (efficient_sam_config, 'img_size'),
              'squeezesam': (squeeze_sam_config, 'encoder_image_size')}
TINY_SIZE = 256
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def build(name: str, tiny: bool, device: str) -> torch.nn.Module:
    """The model ``name`` on random weights (the speed does not depend on them); ``tiny``: at 256x256."""
    if not tiny:
        return build_model(name, pretrained=False).to(device)
    spec = resolve_model(name)
    full_config, size_key = TINY_INPUT[spec.family]
    return build_model(dict(full_config(spec.config), family=spec.family, **{size_key: TINY_SIZE})).to(device)


def paper_images_per_s(name: str):
    """The paper's A100 figure of the architecture ``name`` names, or None."""
    spec = resolve_model(name)
    return PAPER_A100.get((spec.family, spec.config)) if isinstance(spec.config, str) else None


def step_function(model: torch.nn.Module) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple]:
    """The timed call: images ``[B, 3, S, S]``, one box each as ``[B, 1, 2, 2]`` corners with labels 2, 3."""
    size = model.img_size
    if isinstance(model, SqueezeSam):
        return lambda images, boxes, labels: model(images, boxes, labels, scale_to_original_image_size=False)
    return lambda images, boxes, labels: model.predict_masks(model.get_image_embeddings(images), boxes, labels,
                                                             True, size, size)


def attention_context(device: str, precision: str):
    if torch.device(device).type == 'cuda' and precision != 'fp32':
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel([SDPBackend.FLASH_ATTENTION])
    return contextlib.nullcontext()


def peak_memory(device: str) -> int:
    if torch.device(device).type == 'cuda':
        return torch.cuda.max_memory_allocated(device)
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(name: str, model: torch.nn.Module, batch: int, args, compile_step: bool = False) -> dict:
    size = model.img_size
    images = torch.rand(batch, 3, size, size, device=args.device)
    corners = [[size * 0.2, size * 0.25], [size * 0.7, size * 0.8]]
    boxes = torch.tensor(corners, device=args.device).expand(batch, 1, 2, 2)
    labels = torch.tensor([2.0, 3.0], device=args.device).expand(batch, 1, 2)
    step = step_function(model)
    if compile_step:
        torch._dynamo.reset()  # one compilation per batch size, never the recompilation limit's eager fallback
        step = torch.compile(step)
    autocast = (torch.autocast(torch.device(args.device).type, dtype=DTYPES[args.precision])
                if args.precision != 'fp32' else contextlib.nullcontext())
    if torch.device(args.device).type == 'cuda':
        torch.cuda.reset_peak_memory_stats(args.device)

    def call():
        with torch.inference_mode(), autocast, attention_context(args.device, args.precision):
            return step(images, boxes, labels)

    if compile_step:
        call()  # compiles
    seconds = median_seconds(call, args.runs, args.warmup)
    return dict(model=name, input=size, batch=batch, precision=args.precision, compile=compile_step,
                seconds=seconds, images_per_s=batch / seconds, peak_memory=peak_memory(args.device),
                memory_kind='cuda' if torch.device(args.device).type == 'cuda' else 'rss')


def sweep(name: str, args) -> List[dict]:
    """Batch 1, then doubling to ``--max-batch`` (eager); the rows of batch 1 and of the best batch,
    measured again compiled with ``--compile`` (compiling every batch size would take minutes each)."""
    model = build(name, args.tiny, args.device)
    rows, batch = [], 1
    while batch <= args.max_batch:
        try:
            rows.append(measure(name, model, batch, args))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        print(f'  {name} batch {batch}: {rows[-1]["images_per_s"]:.1f} images/s', flush=True)
        batch *= 2
    if not rows:
        raise MemoryError(f'{name} does not fit batch 1 on {args.device}')
    best = max(rows, key=lambda row: row['images_per_s'])
    chosen = [rows[0]] + ([best] if best is not rows[0] else [])
    if args.compile:
        chosen = [measure(name, model, row['batch'], args, compile_step=True) for row in chosen]
        for row in chosen:
            print(f'  {name} batch {row["batch"]} compiled: {row["images_per_s"]:.1f} images/s', flush=True)
    chosen[0]['kind'] = 'batch 1' if len(chosen) > 1 else 'batch 1, best'
    chosen[-1].setdefault('kind', 'best')
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=list(DEFAULT_MODELS),
                        help='model names (see efficientsam_plugins.build; default: %(default)s)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', type=torch_device)
    parser.add_argument('--precision', choices=list(DTYPES), default='fp32', help='autocast dtype (fp32: none)')
    parser.add_argument('--compile', action='store_true', help='torch.compile each model call')
    parser.add_argument('--max-batch', type=positive_int, default=64, help='largest batch of the sweep')
    parser.add_argument('--runs', type=positive_int, default=10, help='timed calls per batch (median)')
    parser.add_argument('--warmup', type=non_negative_int, default=3)
    parser.add_argument('--tiny', action='store_true', help=f'{TINY_SIZE}x{TINY_SIZE} inputs: a functional check')
    parser.add_argument('--json', metavar='PATH', help='also write the rows, the command and the machine to this '
                        'JSON file (docs/benchmarks/ holds the ones the benchmarks page shows)')
    args = parser.parse_args(argv)
    if torch.device(args.device).type == 'cpu' and args.precision == 'fp16':
        parser.error('--precision fp16 needs a CUDA device (CPU autocast: bf16)')
    for model in args.models:  # an unknown name fails before any work
        resolve_model(model)

    name = torch.cuda.get_device_name(args.device) if torch.device(args.device).type == 'cuda' else (
        f'CPU, {torch.get_num_threads()} threads')
    print(f'throughput on {name}, torch {torch.__version__}, {args.precision}'
          f'{", torch.compile" if args.compile else ""}, one box per image, median of {args.runs} runs'
          f'{" (tiny inputs: not the protocol)" if args.tiny else ""}', flush=True)
    rows = [row for model in args.models for row in sweep(model, args)]
    memory = 'peak GPU memory' if torch.device(args.device).type == 'cuda' else 'peak RSS'
    print(f'| model | input | batch | images/s | ms per batch | {memory} (GiB) | paper A100 images/s |\n'
          '|---|---:|---|---:|---:|---:|---:|')
    for row in rows:
        paper = paper_images_per_s(row['model'])
        versus = f'{paper:.0f} ({row["images_per_s"] / paper:.1f}x)' if paper and not args.tiny else '-'
        print(f'| {row["model"]} | {row["input"]} | {row["batch"]} ({row["kind"]}) | {row["images_per_s"]:.1f} | '
              f'{row["seconds"] * 1e3:.1f} | {row["peak_memory"] / 2 ** 30:.2f} | {versus} |')
    if args.json:
        write_benchmark_json(args.json, 'tools/benchmark_throughput.py', argv,
                             [dict(row, paper_a100_images_per_s=paper_images_per_s(row['model'])) for row in rows],
                             notes=f'{name}, {args.precision}{", torch.compile" if args.compile else ""}; one box per '
                             f'image, random weights (speed does not depend on them), median of {args.runs} runs'
                             f'{"; tiny inputs: a functional check, not the protocol" if args.tiny else ""}.')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
