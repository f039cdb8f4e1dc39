"""SA-1B (and COCO/LVIS-format) data for EfficientSAM finetuning and in-training evaluation.

SA-1B stores one JSON per image beside it (``sa_1.jpg`` + ``sa_1.json`` holding ``image`` and
``annotations`` with RLE ``segmentation``). Training samples are resized here, in the loader
workers, to what the model consumes: the image to ``img_size x img_size`` (bilinear, aspect ratio
not kept, as the official model resizes) and up to ``max_masks_per_image`` randomly chosen masks
to the decoder's output grid ``mask_size`` (area interpolation, threshold 0.5; masks that vanish
are skipped). With ``img_size=None`` samples keep their original size and every instance, for the
promptable evaluation during training.
"""
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..evaluation.dataset import InstanceDataset, load_rgb_image, read_json
from ..evaluation.masks import coco_mask_api

MAX_RESAMPLE_ATTEMPTS = 20


@dataclass
class _ImageEntry:
    image_id: int
    img_path: str
    ann_path: Optional[str]  # SA-1B per-image JSON; None for COCO-format data


def resize_image(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``HxWx3`` to uint8 ``[3, size, size]`` (bilinear, like the official preprocessing)."""
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
    resized = F.interpolate(tensor, (size, size), mode='bilinear', align_corners=False)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


def resize_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """bool ``[H, W]`` to bool ``[size, size]``: covered area fraction >= 0.5."""
    resized = F.interpolate(torch.from_numpy(mask)[None, None].float(), (size, size), mode='area')
    return resized[0, 0] >= 0.5


class SA1BDataset(Dataset):
    """Images with instance masks from an SA-1B folder or a COCO/LVIS annotation file.

    Args:
        data_root: SA-1B folder of ``*.jpg`` + ``*.json`` pairs (give this, or the next two).
        ann_file, img_dir: COCO/LVIS-format instances JSON and image folder (non-crowd instances).
        img_size: model input size for training samples; None keeps original sizes (evaluation).
        mask_size: ground-truth mask size for training, default ``img_size // 4`` (the decoder's).
        max_masks_per_image: masks sampled per training image (SAM used up to 64 per GPU image).
        max_images: only the first N images (sorted by id / file name), for smoke runs.
    """

    def __init__(self, data_root: Optional[str] = None, ann_file: Optional[str] = None,
                 img_dir: Optional[str] = None, img_size: Optional[int] = 1024,
                 mask_size: Optional[int] = None, max_masks_per_image: int = 64,
                 max_images: Optional[int] = None) -> None:
        if (data_root is None) == (ann_file is None):
            raise ValueError('give either data_root (SA-1B folder) or ann_file + img_dir (COCO/LVIS format)')
        self.img_size = img_size
        self.mask_size = mask_size or (img_size // 4 if img_size else None)
        self.max_masks_per_image = max_masks_per_image
        self.coco: Optional[InstanceDataset] = None
        if data_root is not None:
            self.entries = self._scan_sa1b(data_root)
            self.source = 'sa1b'
        else:
            if img_dir is None:
                raise ValueError('ann_file needs img_dir')
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
        for name in sorted(os.listdir(root)):
            stem, ext = os.path.splitext(name)
            if ext.lower() != '.json':
                continue
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

    def _raw_instances(self, entry: _ImageEntry) -> Tuple[int, int, List[Dict[str, Any]], Callable]:
        """Image height, width, its non-crowd annotations (masks still encoded) and their decoder."""
        if entry.ann_path is None:
            info = self.coco.images[entry.image_id]
            return info.height, info.width, self.coco.annotations(entry.image_id), self.coco.mask
        data = read_json(entry.ann_path, 'SA-1B annotation')
        try:
            height, width = int(data['image']['height']), int(data['image']['width'])
            anns = list(data['annotations'])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f'SA-1B annotation {entry.ann_path} lacks image height/width or '
                             f'annotations ({err!r})') from err
        return height, width, anns, lambda ann: coco_mask_api().decode(ann['segmentation']).astype(bool)

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
        height, width, anns, decode = self._raw_instances(entry)
        image = load_rgb_image(entry.img_path, (height, width))
        masks = []
        for i in torch.randperm(len(anns)).tolist():
            mask = resize_mask(decode(anns[i]), self.mask_size)
            if mask.any():
                masks.append(mask)
                if len(masks) == self.max_masks_per_image:
                    break
        if not masks:
            return None
        return dict(inputs=resize_image(image, self.img_size),
                    data_samples=dict(image_id=entry.image_id, img_path=entry.img_path,
                                      ori_shape=(height, width), gt_masks=torch.stack(masks)))

    def _evaluation_sample(self, entry: _ImageEntry) -> Dict[str, Any]:
        height, width, anns, decode = self._raw_instances(entry)
        image = load_rgb_image(entry.img_path, (height, width))
        masks, ann_ids, cat_ids = [], [], []
        for i, ann in enumerate(anns):
            mask = decode(ann)
            if mask.any():
                masks.append(torch.from_numpy(mask))
                ann_ids.append(int(ann.get('id', i)))
                cat_ids.append(int(ann.get('category_id', 0)))
        gt = torch.stack(masks) if masks else torch.zeros((0, height, width), dtype=torch.bool)
        return dict(inputs=torch.from_numpy(np.array(image)).permute(2, 0, 1),
                    data_samples=dict(image_id=entry.image_id, img_path=entry.img_path,
                                      ori_shape=(height, width), gt_masks=gt,
                                      annotation_ids=ann_ids, category_ids=cat_ids))


def efficientsam_collate(batch: Sequence[Dict[str, Any]]) -> Dict[str, List[Any]]:
    """Keeps images and samples as lists (masks per image differ in number); the data
    preprocessor stacks the images."""
    return dict(inputs=[item['inputs'] for item in batch],
                data_samples=[item['data_samples'] for item in batch])
