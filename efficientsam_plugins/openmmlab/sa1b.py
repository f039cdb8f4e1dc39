"""SA-1B (and COCO/LVIS-format) data for EfficientSAM finetuning and in-training evaluation.

SA-1B stores one JSON per image beside it (``sa_1.jpg`` + ``sa_1.json``: ``image`` and ``annotations``
with RLE ``segmentation``). Training samples are resized in the loader workers to what the model
consumes: the image to ``img_size`` squared (bilinear, aspect ratio not kept, as the official model),
up to ``max_masks_per_image`` random masks to the decoder's ``mask_size`` (covered fraction >= 0.5,
vanished masks skipped). With ``img_size=None`` samples keep their size and every instance (evaluation).
"""
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.registry import DATASETS, FUNCTIONS
from torch.utils.data import Dataset

from ..evaluation.dataset import InstanceDataset, load_rgb_image, read_json

MAX_RESAMPLE_ATTEMPTS = 20


def resize_image(image: torch.Tensor, size) -> torch.Tensor:
    """uint8 ``[3, H, W]`` to ``size`` (an int: square), bilinear, as the model's own resize."""
    image = F.interpolate(image[None].float(), size, mode='bilinear', align_corners=False)[0]
    return image.round().clamp(0, 255).to(torch.uint8)


def resize_masks(masks: torch.Tensor, size) -> torch.Tensor:
    """bool ``[N, H, W]`` to ``size`` (an int: square): a pixel is set where the mask covers half of it."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(masks.shape[-2:]) == size:
        return masks
    return F.interpolate(masks[:, None].float(), size, mode='area')[:, 0] >= 0.5


def random_masks(anns: Sequence[Dict[str, Any]], decode: Callable, size, limit: Optional[int]) -> List[torch.Tensor]:
    """Up to ``limit`` (None: all) of the annotations' masks, in random order, at ``size``; masks
    that vanish there are skipped."""
    masks = []
    for i in torch.randperm(len(anns)).tolist():
        mask = resize_masks(torch.from_numpy(decode(anns[i]))[None], size)[0]
        if mask.any():
            masks.append(mask)
            if len(masks) == limit:
                break
    return masks


class _ImageEntry(NamedTuple):
    image_id: int
    img_path: str
    ann_path: Optional[str]  # SA-1B per-image JSON; None for COCO-format data


@DATASETS.register_module()
class SA1BDataset(Dataset):
    """Images with instance masks from an SA-1B folder (``data_root``) or a COCO/LVIS annotation file
    (``ann_file`` + ``img_dir``, non-crowd instances).

    ``mask_size`` defaults to ``img_size // 4`` (the decoder's output); SAM sampled up to 64 masks
    per GPU image; ``max_images`` keeps the first N images (by id / file name), for smoke runs.
    """

    def __init__(self, data_root: Optional[str] = None, ann_file: Optional[str] = None,
                 img_dir: Optional[str] = None, img_size: Optional[int] = 1024,
                 mask_size: Optional[int] = None, max_masks_per_image: int = 64,
                 max_images: Optional[int] = None) -> None:
        if (data_root is None) == (ann_file is None) or (ann_file is not None and img_dir is None):
            raise ValueError('give either data_root (SA-1B folder) or ann_file + img_dir (COCO/LVIS format)')
        self.img_size = img_size
        self.mask_size = mask_size or (img_size // 4 if img_size else None)
        self.max_masks_per_image = max_masks_per_image
        self.coco: Optional[InstanceDataset] = None
        if data_root is not None:
            self.entries = self._scan_sa1b(data_root)
            self.source = 'sa1b'
        else:
            self.coco = InstanceDataset(ann_file, img_dir)
            ids = [i for i in self.coco.image_ids if self.coco.annotations(i)]
            self.entries = [_ImageEntry(i, self.coco.images[i].path, None) for i in ids]
            self.source = self.coco.format
        if max_images is not None:
            self.entries = self.entries[:max_images]
        if not self.entries:
            raise ValueError(f'no images with instance masks found in {data_root or ann_file}')

    @staticmethod
    def _scan_sa1b(root: str) -> List[_ImageEntry]:
        if not os.path.isdir(root):
            raise FileNotFoundError(f'SA-1B folder not found: {root}')
        entries = []
        for name in sorted(n for n in os.listdir(root) if n.lower().endswith('.json')):
            stem = os.path.splitext(name)[0]
            img_path = os.path.join(root, stem + '.jpg')
            if not os.path.isfile(img_path):
                raise FileNotFoundError(f'SA-1B annotation {name} has no image {img_path} beside it')
            image_id = int(stem.rsplit('_', 1)[-1]) if stem.rsplit('_', 1)[-1].isdigit() else len(entries)
            entries.append(_ImageEntry(image_id, img_path, os.path.join(root, name)))
        return entries

    @property
    def metainfo(self) -> Dict[str, Any]:
        return dict(source=self.source, num_images=len(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self, entry: _ImageEntry) -> Tuple[torch.Tensor, List[Dict[str, Any]], Callable, Dict[str, Any]]:
        """The image (uint8 ``[3, H, W]``), its non-crowd annotations (masks still encoded), their
        decoder and the sample fields both modes share."""
        if entry.ann_path is None:
            info = self.coco.images[entry.image_id]
            height, width, anns, decode = info.height, info.width, self.coco.annotations(info.id), self.coco.mask
        else:
            data = read_json(entry.ann_path, 'SA-1B annotation')
            try:
                height, width = int(data['image']['height']), int(data['image']['width'])
                anns = list(data['annotations'])
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f'SA-1B annotation {entry.ann_path} lacks image height/width or '
                                 f'annotations ({err!r})') from err
            from pycocotools import mask as mask_api

            def decode(ann):
                return mask_api.decode(ann['segmentation']).astype(bool)
        image = torch.from_numpy(np.array(load_rgb_image(entry.img_path, (height, width)))).permute(2, 0, 1)
        fields = dict(image_id=entry.image_id, img_path=entry.img_path, ori_shape=(height, width))
        return image, anns, decode, fields

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if self.img_size is None:
            return self._evaluation_sample(self.entries[index])
        for attempt in range(MAX_RESAMPLE_ATTEMPTS):
            sample = self._training_sample(self.entries[(index + attempt) % len(self.entries)])
            if sample is not None:
                return sample
        raise ValueError(f'{MAX_RESAMPLE_ATTEMPTS} images from index {index} on have no mask left '
                         f'at {self.mask_size}x{self.mask_size}; raise img_size or check the annotations')

    def _training_sample(self, entry: _ImageEntry) -> Optional[Dict[str, Any]]:
        image, anns, decode, sample = self._load(entry)
        masks = random_masks(anns, decode, self.mask_size, self.max_masks_per_image)
        if not masks:
            return None
        return dict(inputs=resize_image(image, self.img_size), data_samples=dict(sample, gt_masks=torch.stack(masks)))

    def _evaluation_sample(self, entry: _ImageEntry) -> Dict[str, Any]:
        image, anns, decode, sample = self._load(entry)
        masks, ann_ids, cat_ids = [], [], []
        for i, ann in enumerate(anns):
            mask = decode(ann)
            if mask.any():
                masks.append(torch.from_numpy(mask))
                ann_ids.append(int(ann.get('id', i)))
                cat_ids.append(int(ann.get('category_id', 0)))
        gt = torch.stack(masks) if masks else torch.zeros((0, *image.shape[1:]), dtype=torch.bool)
        return dict(inputs=image,
                    data_samples=dict(sample, gt_masks=gt, annotation_ids=ann_ids, category_ids=cat_ids))


@FUNCTIONS.register_module()
def efficientsam_collate(batch: Sequence[Dict[str, Any]]) -> Dict[str, List[Any]]:
    """Keeps images and samples as lists (masks per image differ in number); the data
    preprocessor stacks the images."""
    return dict(inputs=[item['inputs'] for item in batch],
                data_samples=[item['data_samples'] for item in batch])
