"""A labelled image dataset from COCO instance annotations, for offline finetuning smoke runs."""
import json
import os
from typing import List

from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS


@DATASETS.register_module()
class COCOMainObjectDataset(BaseDataset):
    """COCO images (``ann_file`` a COCO ``instances_*.json``) labelled with the category of their
    largest instance (80 classes), so that the ImageNet finetuning configs run on the few COCO
    images bundled with the repository (``data/coco_mini``); images without instances are skipped.
    """

    def load_data_list(self) -> List[dict]:
        with open(self.ann_file) as f:
            coco = json.load(f)
        categories = sorted(coco['categories'], key=lambda c: c['id'])
        label_of = {c['id']: i for i, c in enumerate(categories)}
        self._metainfo['classes'] = tuple(c['name'] for c in categories)
        largest = {}  # the first of the largest instances of each image
        for ann in sorted(coco['annotations'], key=lambda a: -a['area']):
            largest.setdefault(ann['image_id'], ann)
        data_list = [dict(img_path=os.path.join(self.data_prefix['img_path'], image['file_name']),
                          gt_label=label_of[largest[image['id']]['category_id']])
                     for image in sorted(coco['images'], key=lambda im: im['file_name']) if image['id'] in largest]
        if not data_list:
            raise ValueError(f'{self.ann_file} has no image with instances')
        return data_list
