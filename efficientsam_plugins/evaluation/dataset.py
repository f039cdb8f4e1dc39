"""COCO- and LVIS-format instance datasets for evaluation: images, ground-truth masks, checks.

The annotations are indexed and rasterised by pycocotools' ``COCO`` (LVIS files have the same
layout). Every problem with the inputs (missing files, malformed JSON, images that do not decode or
do not match their annotation's size) raises before or instead of producing results, naming the file.
"""
import contextlib
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .masks import size_bucket

DATA_FORMATS = ('auto', 'coco', 'lvis')


@dataclass
class ImageInfo:
    id: int
    path: str
    width: int
    height: int


@dataclass
class Instance:
    """One non-crowd ground-truth object with its decoded mask."""
    annotation_id: int
    category_id: int
    mask: np.ndarray
    area: int

    @property
    def size(self) -> str:
        return size_bucket(self.area)


def read_json(path: str, what: str) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f'{what} {path} is not valid JSON: {err}') from err


def coco_index(data: Any, what: str):
    """pycocotools' ``COCO`` index of a COCO/LVIS annotation dict, after checking its layout."""
    from pycocotools.coco import COCO
    if not isinstance(data, dict) or not isinstance(data.get('images'), list) \
            or not isinstance(data.get('annotations'), list):
        raise ValueError(f'{what} is not in COCO/LVIS format: expected a dict with "images" and '
                         f'"annotations" lists')
    api = COCO()
    api.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            api.createIndex()
    except (KeyError, TypeError) as err:
        raise ValueError(f'{what}: an image, annotation or category entry lacks its id or image_id '
                         f'({err!r})') from err
    return api


def load_rgb_image(path: str, expected_hw: Optional[Sequence[int]] = None) -> np.ndarray:
    """An image file as uint8 ``HxWx3`` RGB as displayed (:func:`~efficientsam_plugins.image_io.read_image`:
    EXIF orientation applied, 16-bit scaled, alpha on white), checked against the annotation's size."""
    from ..image_io import read_image
    array = read_image(path)
    if expected_hw is not None and tuple(array.shape[:2]) != tuple(expected_hw):
        raise ValueError(f'image {path} is {array.shape[1]}x{array.shape[0]} but its annotation says '
                         f'{expected_hw[1]}x{expected_hw[0]}')
    return array


class InstanceDataset:
    """Images and non-crowd instance masks of a COCO- or LVIS-format annotation file; ``api`` is
    its pycocotools ``COCO`` object.

    LVIS images (named by ``coco_url``) are looked up as ``img_dir/<split>/<name>``, then
    ``img_dir/<name>``; ``data_format='auto'`` means LVIS when the images carry LVIS fields.
    """

    def __init__(self, ann_file: str, img_dir: str, data_format: str = 'auto') -> None:
        if data_format not in DATA_FORMATS:
            raise ValueError(f'unknown data format {data_format!r}; expected one of {DATA_FORMATS}')
        if not os.path.isdir(img_dir):
            raise FileNotFoundError(f'image folder not found: {img_dir}')
        data = read_json(ann_file, 'annotation file')
        self.api = coco_index(data, f'annotation file {ann_file}')
        self.ann_file, self.img_dir = ann_file, img_dir
        first = (data['images'] or [{}])[0]  # LVIS marks its images with these fields
        lvis = 'not_exhaustive_category_ids' in first or 'neg_category_ids' in first
        self.format = ('lvis' if lvis else 'coco') if data_format == 'auto' else data_format
        self.categories = self.api.cats
        self.images: Dict[int, ImageInfo] = {}
        for image in data['images']:
            try:
                self.images[image['id']] = ImageInfo(image['id'], self._image_path(image), int(image['width']),
                                                     int(image['height']))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f'annotation file {ann_file}: malformed image entry '
                                 f'{str(image)[:200]} ({err!r})') from err
        for image_id, anns in self.api.imgToAnns.items():
            if image_id not in self.images:
                raise ValueError(f'annotation file {ann_file}: annotation {anns[0]["id"]} refers to '
                                 f'unknown image id {image_id}')

    def _image_path(self, image: Dict[str, Any]) -> str:
        if image.get('file_name'):
            return os.path.join(self.img_dir, image['file_name'])
        url = image.get('coco_url')
        if not url:
            raise KeyError('file_name or coco_url')
        split, name = url.rstrip('/').split('/')[-2:]
        nested = os.path.join(self.img_dir, split, name)
        return nested if os.path.exists(nested) else os.path.join(self.img_dir, name)

    @property
    def image_ids(self) -> List[int]:
        return sorted(self.images)

    def check_images_exist(self, image_ids: Sequence[int]) -> None:
        """Fails early, listing missing image files, so a run never stops half-way for that."""
        missing = [self.images[i].path for i in image_ids if not os.path.isfile(self.images[i].path)]
        if missing:
            raise FileNotFoundError(f'{len(missing)} image files of {self.ann_file} are missing under '
                                    f'{self.img_dir}, e.g. {missing[:3]}')

    def load_image(self, image_id: int) -> np.ndarray:
        info = self.images[image_id]
        return load_rgb_image(info.path, (info.height, info.width))

    def annotations(self, image_id: int) -> List[dict]:
        """The image's non-crowd annotations (LVIS has no ``iscrowd``), in file order."""
        return [ann for ann in self.api.imgToAnns.get(image_id, []) if not ann.get('iscrowd', 0)]

    def mask(self, ann: Dict[str, Any]) -> np.ndarray:
        """An annotation's bool ``[H, W]`` mask (pycocotools cannot rasterise an empty polygon list)."""
        if not ann.get('segmentation'):
            info = self.images[ann['image_id']]
            return np.zeros((info.height, info.width), dtype=bool)
        try:
            return self.api.annToMask(ann).astype(bool)
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise ValueError(f'annotation {ann["id"]} of {self.ann_file} has a malformed segmentation '
                             f'({err!r})') from err

    def instances(self, image_id: int) -> Tuple[List[Instance], List[int]]:
        """Non-crowd instances with a non-empty mask (in annotation order), and the ids of the
        non-crowd annotations whose mask decodes to no pixel (they cannot be prompted)."""
        instances, empty = [], []
        for ann in self.annotations(image_id):
            mask = self.mask(ann)
            area = int(np.count_nonzero(mask))
            if area:
                instances.append(Instance(int(ann['id']), int(ann.get('category_id', 0)), mask, area))
            else:
                empty.append(int(ann['id']))
        return instances, empty
