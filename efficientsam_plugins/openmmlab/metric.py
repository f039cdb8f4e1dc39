"""Promptable mIoU as an mmengine metric (needs mmengine; the rest of the package does not).

The model's predict step (e.g. ``EfficientSamFinetuner``) returns, per image, the per-instance
records of :func:`~efficientsam_plugins.evaluation.promptable.evaluate_image`; this metric
aggregates them exactly as ``tools/eval_promptable.py`` does.
"""
from typing import Any, Dict, List, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

from ..evaluation.masks import SIZE_BUCKETS
from ..evaluation.promptable import summarize


@METRICS.register_module(name='EfficientSamPromptableMetric')
class PromptableIoUMetric(BaseMetric):
    """``<prompt>/mIoU`` and ``<prompt>/mIoU_<size>`` (fractions) for every evaluated prompt."""

    default_prefix = 'promptable'

    def process(self, data_batch: Any, data_samples: Sequence[Dict[str, Any]]) -> None:
        # One entry per image: mmengine cuts the collected results to the dataset's length.
        for sample in data_samples:
            self.results.append(sample['records'])

    def compute_metrics(self, results: List[List[Dict[str, Any]]]) -> Dict[str, float]:
        results = [record for image_records in results for record in image_records]
        names = list(dict.fromkeys(r['prompt_name'] for r in results))
        metrics = {}
        for name, entry in summarize(results, names).items():
            if entry['mIoU'] is not None:
                metrics[f'{name}/mIoU'] = entry['mIoU']
            for bucket in SIZE_BUCKETS:
                if entry[bucket]['mIoU'] is not None:
                    metrics[f'{name}/mIoU_{bucket}'] = entry[bucket]['mIoU']
            metrics[f'{name}/num_instances'] = entry['num_instances']
        return metrics
