"""Promptable mIoU as an mmengine metric: aggregates the per-image records of
:func:`~efficientsam_plugins.evaluation.promptable.evaluate_image` that the model's predict step
(``EfficientSamFinetuner``) returns, exactly as ``tools/eval_promptable.py`` does."""
from typing import Any, Dict, List, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

from ..evaluation.masks import SIZE_BUCKETS
from ..evaluation.promptable import summarize


@METRICS.register_module()
class PromptableIoUMetric(BaseMetric):
    """``<prompt>/mIoU`` and ``<prompt>/mIoU_<size>`` (fractions) for every evaluated prompt."""

    default_prefix = 'promptable'

    def process(self, data_batch: Any, data_samples: Sequence[Dict[str, Any]]) -> None:
        # One entry per image: mmengine cuts the collected results to the dataset's length.
        for sample in data_samples:
            self.results.append(sample['records'])

    def compute_metrics(self, results: List[List[Dict[str, Any]]]) -> Dict[str, float]:
        records = [record for image_records in results for record in image_records]
        metrics = {}
        for name, entry in summarize(records, list(dict.fromkeys(r['prompt_name'] for r in records))).items():
            for key, value in [('mIoU', entry['mIoU'])] + [(f'mIoU_{b}', entry[b]['mIoU']) for b in SIZE_BUCKETS]:
                if value is not None:
                    metrics[f'{name}/{key}'] = value
            metrics[f'{name}/num_instances'] = entry['num_instances']
        return metrics
