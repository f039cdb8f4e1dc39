"""A labelled image dataset from COCO instance annotations, for offline finetuning smoke runs."""
import json
import os
from typing import List

from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS


@DATASETS.register_module()
class COCOMainObjectDataset(BaseDataset):
    """COCO images labelled with the category of their largest instance (80 classes).

    Lets the ImageNet finetuning configs run on the few COCO images bundled with the repository
    (``data/coco_mini``); images without instances are skipped.

    Args:
        ann_file: a COCO ``instances_*.json``.
        data_prefix: the image directory (relative to ``data_root``).
    """

    def load_data_list(self) -> List[dict]:
        with open(self.ann_file) as f:
            coco = json.load(f)
        categories = sorted(coco['categories'], key=lambda c: c['id'])
        label_of = {c['id']: i for i, c in enumerate(categories)}
        self._metainfo['classes'] = tuple(c['name'] for c in categories)
        largest = {}
        for ann in coco['annotations']:
            best = largest.get(ann['image_id'])
            if best is None or ann['area'] > best['area']:
                largest[ann['image_id']] = ann
        data_list = []
        for image in sorted(coco['images'], key=lambda im: im['file_name']):
            ann = largest.get(image['id'])
            if ann is not None:
                data_list.append(dict(img_path=os.path.join(self.data_prefix['img_path'], image['file_name']),
                                      gt_label=label_of[ann['category_id']]))
        if not data_list:
            raise ValueError(f'{self.ann_file} has no image with instances')
        return data_list
