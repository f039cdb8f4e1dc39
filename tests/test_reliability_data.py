"""Training on an annotation file whose ``annotations`` list is empty: one error naming the file (mmengine's
datasets said ``need at least one array to concatenate``)."""
import json
import os

import pytest
import torch

mmengine = pytest.importorskip('mmengine')

from mmengine.config import Config  # noqa: E402
from mmengine.dataset import BaseDataset  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.registry import DATASETS, MODELS  # noqa: E402

from efficientsam_plugins.openmmlab.launch import train  # noqa: E402


class CocoLikeDataset(BaseDataset):
    """What mmdet's CocoDataset does with a COCO file: one sample per image with instances, images
    without any dropped (``filter_empty_gt``)."""

    def load_data_list(self):
        with open(self.ann_file, encoding='utf-8') as stream:
            data = json.load(stream)
        annotated = {ann['image_id'] for ann in data['annotations']}
        return [dict(img_id=image['id']) for image in data['images'] if image['id'] in annotated]


class TinyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs=None, data_samples=None, mode='loss'):
        return dict(loss=self.weight.sum())


@pytest.fixture
def config(tmp_path):
    DATASETS.register_module(name='ReliabilityCocoLikeDataset', module=CocoLikeDataset, force=True)
    MODELS.register_module(name='ReliabilityTinyModel', module=TinyModel, force=True)
    annotations = dict(images=[dict(id=1, file_name='a.jpg', width=4, height=4)], annotations=[], categories=[])
    (tmp_path / 'train.json').write_text(json.dumps(annotations))
    return Config(dict(
        default_scope='mmengine', work_dir=str(tmp_path / 'work'), model=dict(type='ReliabilityTinyModel'),
        train_dataloader=dict(batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                              dataset=dict(type='ReliabilityCocoLikeDataset', data_root=str(tmp_path),
                                           ann_file='train.json')),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)), launcher='none'))


def test_empty_annotations_list_is_named(config, tmp_path):
    with pytest.raises(ValueError, match=f'the training set is empty: annotation file '
                                         f'{tmp_path / "train.json"} has an empty "annotations" list'):
        train(config)


def test_every_image_filtered_out_names_the_file(config, tmp_path):
    data = json.loads((tmp_path / 'train.json').read_text())
    data['annotations'] = [dict(id=1, image_id=99, category_id=1, bbox=[0, 0, 1, 1])]  # no image of its own
    (tmp_path / 'train.json').write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f'no image of {tmp_path / "train.json"} is left after filtering'):
        train(config)
    assert os.path.isdir(tmp_path / 'work')
