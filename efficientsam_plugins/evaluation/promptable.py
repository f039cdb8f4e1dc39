"""Promptable mIoU: every non-crowd ground-truth instance is prompted with its tight box and with
1..K simulated clicks (:mod:`.clicks`), and the returned mask is scored by IoU. All prompts of an
image share one ``set_image``: the boxes go in one call, the clicks in one call per click round.
"""
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from .clicks import (
    CLICK_PRESETS,
    CLICK_PROTOCOLS,
    LATER_CLICK_PROTOCOLS,
    center_click,
    click_rng,
    next_error_click,
    next_positive_click,
    random_click,
)
from .dataset import ImageInfo, Instance, InstanceDataset
from .masks import SIZE_BUCKETS, encode_mask, mask_iou, tight_box
from .segmenters import PromptBatch, Segmenter


@dataclass
class PromptProtocol:
    """Which prompts to evaluate and how clicks are placed (see :mod:`.clicks`).

    ``preset`` (``paper``: every click uniform in the mask; ``sam``: centre click, then error-region
    clicks) sets ``click_protocol`` and ``later_clicks`` unless they are given. ``negative_clicks``:
    whether an error click on a false positive is negative; None: where the segmenter accepts them."""
    box: bool = True
    clicks: Tuple[int, ...] = (1, 3)
    preset: str = 'paper'
    click_protocol: Optional[str] = None
    later_clicks: Optional[str] = None
    negative_clicks: Optional[bool] = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.clicks = tuple(sorted({int(v) for v in self.clicks}))
        if any(c < 1 for c in self.clicks):
            raise ValueError(f'click counts must be >= 1, got {list(self.clicks)}')
        if self.preset not in CLICK_PRESETS:
            raise ValueError(f'unknown click preset {self.preset!r}; expected one of {sorted(CLICK_PRESETS)}')
        first, later = CLICK_PRESETS[self.preset]
        self.click_protocol = first if self.click_protocol is None else self.click_protocol
        self.later_clicks = later if self.later_clicks is None else self.later_clicks
        if self.click_protocol not in CLICK_PROTOCOLS:
            raise ValueError(f'unknown click protocol {self.click_protocol!r}; expected one of {CLICK_PROTOCOLS}')
        if self.later_clicks not in LATER_CLICK_PROTOCOLS:
            raise ValueError(f'unknown later-click protocol {self.later_clicks!r}; '
                             f'expected one of {LATER_CLICK_PROTOCOLS}')
        if self.negative_clicks and self.later_clicks != 'error':
            raise ValueError('negative clicks need later_clicks="error": random clicks are all in the mask')
        if not self.box and not self.clicks:
            raise ValueError('nothing to evaluate: enable the box prompt or give click counts')

    @property
    def prompt_names(self) -> List[str]:
        return (['box'] if self.box else []) + [click_name(k) for k in self.clicks]

    @property
    def name(self) -> str:
        """The preset's name, or ``custom`` where ``click_protocol`` / ``later_clicks`` override it."""
        return self.preset if (self.click_protocol, self.later_clicks) == CLICK_PRESETS[self.preset] else 'custom'

    def resolved(self, segmenter: Segmenter) -> 'PromptProtocol':
        """This protocol with ``negative_clicks`` decided for ``segmenter``."""
        accepts = segmenter.supports_negative_points
        if self.negative_clicks and not accepts:
            raise ValueError('negative clicks requested but the model has no negative-click input; build it '
                             'with negative_points=True (see the finetuning configs) or leave them off')
        wanted = accepts if self.negative_clicks is None else self.negative_clicks
        return replace(self, negative_clicks=bool(wanted and self.later_clicks == 'error'))

    def settings(self) -> Dict[str, Any]:
        """The protocol as recorded in the JSON outputs."""
        return dict(protocol=self.name, **{k: v for k, v in asdict(self).items() if k not in ('box', 'clicks')})

    def describe(self) -> str:
        """One line for the table header."""
        negatives = '' if self.negative_clicks is None or self.later_clicks != 'error' else \
            f', negative clicks {"on" if self.negative_clicks else "off"}'
        return (f'click protocol {self.name}: first click {self.click_protocol}, later clicks '
                f'{self.later_clicks}{negatives}, seed {self.seed}')


def click_name(k: int) -> str:
    return f'{k}_click' if k == 1 else f'{k}_clicks'


def _record(info: ImageInfo, inst: Instance, name: str, prompt: Dict[str, Any], mask: np.ndarray,
            score: float, keep_masks: bool) -> Dict[str, Any]:
    record = dict(image_id=info.id, annotation_id=inst.annotation_id, category_id=inst.category_id,
                  area=inst.area, size=inst.size, prompt_name=name, prompt=prompt,
                  iou=mask_iou(mask, inst.mask), predicted_iou=float(score))
    if keep_masks:
        record['segmentation'] = encode_mask(mask)
    return record


def evaluate_image(segmenter: Segmenter, info: ImageInfo, image: Optional[np.ndarray],
                   instances: Sequence[Instance], protocol: PromptProtocol,
                   keep_masks: bool = False) -> List[Dict[str, Any]]:
    """Per-instance, per-prompt records (IoU, prompt, predicted IoU; RLE masks if ``keep_masks``)."""
    if not instances:
        return []
    segmenter.set_image(image, info)
    records = []
    if protocol.box:
        boxes = np.array([tight_box(inst.mask) for inst in instances], dtype=np.float32)
        result = segmenter.segment(PromptBatch([inst.annotation_id for inst in instances], boxes=boxes))
        for inst, box, mask, score in zip(instances, boxes, result.masks, result.scores):
            records.append(_record(info, inst, 'box', {'box': box.tolist()}, mask, score, keep_masks))
    if not protocol.clicks:
        return records
    protocol = protocol.resolved(segmenter)
    rngs = [click_rng(protocol.seed, info.id, inst.annotation_id) for inst in instances]
    clicks = [[center_click(inst.mask) if protocol.click_protocol == 'center' else random_click(inst.mask, rng)]
              for inst, rng in zip(instances, rngs)]
    labels = [[1] for _ in instances]
    predictions: List[Optional[np.ndarray]] = [None] * len(instances)
    scores = [0.0] * len(instances)
    active = list(range(len(instances)))
    for round_ in range(1, max(protocol.clicks) + 1):
        if round_ > 1:
            new = {i: _next_click(protocol, predictions[i], instances[i].mask, rngs[i]) for i in active}
            active = [i for i in active if new[i] is not None]
            for i in active:
                clicks[i].append(new[i][0])
                labels[i].append(int(new[i][1]))
        if active:
            points = np.array([clicks[i] for i in active], dtype=np.float32)
            point_labels = np.array([labels[i] for i in active], dtype=np.float32)
            result = segmenter.segment(PromptBatch([instances[i].annotation_id for i in active], points=points,
                                                   labels=point_labels if protocol.negative_clicks else None))
            for j, i in enumerate(active):
                predictions[i], scores[i] = result.masks[j], float(result.scores[j])
        if round_ in protocol.clicks:
            for inst, pts, lbl, mask, score in zip(instances, clicks, labels, predictions, scores):
                records.append(_record(info, inst, click_name(round_),
                                       {'points': [list(p) for p in pts], 'labels': list(lbl)},
                                       mask, score, keep_masks))
    return records


def _next_click(protocol: PromptProtocol, prediction: np.ndarray, gt: np.ndarray,
                rng: np.random.Generator) -> Optional[Tuple[Tuple[float, float], bool]]:
    """``(click, positive)`` of the next round, or None when the instance gets no more clicks."""
    if protocol.later_clicks == 'random':
        return random_click(gt, rng), True
    if protocol.negative_clicks:
        return next_error_click(prediction, gt)
    click = next_positive_click(prediction, gt)
    return None if click is None else (click, True)


@dataclass
class EvaluationResult:
    records: List[Dict[str, Any]]
    summary: Dict[str, Any]
    num_images: int
    empty_annotation_ids: List[int] = field(default_factory=list)
    protocol: Optional[PromptProtocol] = None  # as run: negative_clicks decided for the segmenter


def evaluate_dataset(dataset: InstanceDataset, segmenter: Segmenter, protocol: PromptProtocol,
                     image_ids: Optional[Iterable[int]] = None, keep_masks: bool = False,
                     progress: bool = True) -> EvaluationResult:
    """Runs :func:`evaluate_image` over the dataset (all images, or ``image_ids``)."""
    ids = dataset.image_ids if image_ids is None else list(image_ids)
    unknown = [i for i in ids if i not in dataset.images]
    if unknown:
        raise KeyError(f'image ids {unknown[:5]} are not in {dataset.ann_file}')
    if segmenter.needs_image:
        dataset.check_images_exist(ids)
    protocol = protocol.resolved(segmenter) if protocol.clicks else protocol
    bar = tqdm(ids, unit='image', disable=not progress)
    records, empty = [], []
    for image_id in bar:
        instances, empty_ids = dataset.instances(image_id)
        empty += empty_ids
        if instances:
            image = dataset.load_image(image_id) if segmenter.needs_image else None
            records += evaluate_image(segmenter, dataset.images[image_id], image, instances, protocol, keep_masks)
        bar.set_postfix_str(f'{len(records)} prompts', refresh=False)
    return EvaluationResult(records, summarize(records, protocol.prompt_names), len(ids), empty, protocol)


def summarize(records: Sequence[Dict[str, Any]], prompt_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """mIoU per prompt, overall and per COCO size (None where a bucket has no instance)."""
    def entry(ious):
        return {'mIoU': float(np.mean(ious)) if ious else None, 'num_instances': len(ious)}

    summary = {}
    for name in prompt_names if prompt_names is not None else sorted({r['prompt_name'] for r in records}):
        rows = [r for r in records if r['prompt_name'] == name]
        summary[name] = dict(entry([r['iou'] for r in rows]),
                             **{b: entry([r['iou'] for r in rows if r['size'] == b]) for b in SIZE_BUCKETS})
    return summary


def format_table(summary: Dict[str, Any], protocol: Optional[PromptProtocol] = None) -> str:
    """A plain-text table of mIoU in percent (``-`` where a bucket is empty), headed by the click
    protocol when given."""
    def pct(value):
        return '-' if value is None else f'{100 * value:.1f}'
    header = f'{"prompt":<10} {"mIoU":>6} {"small":>6} {"medium":>6} {"large":>6} {"instances":>9}'
    lines = ([protocol.describe()] if protocol is not None and protocol.clicks else []) + [header, '-' * len(header)]
    for name, entry in summary.items():
        lines.append(f'{name:<10} {pct(entry["mIoU"]):>6} ' + ' '.join(
            f'{pct(entry[b]["mIoU"]):>6}' for b in SIZE_BUCKETS) + f' {entry["num_instances"]:>9}')
    return '\n'.join(lines)
