"""A web page to segment your own photo: clicks, boxes, everything, one-tap cut-out (Gradio).

    python tools/web_demo.py --host 127.0.0.1 --port 7860                 # EfficientSAM-Ti (zoo weights)
    python tools/web_demo.py --model squeezesam --checkpoint squeeze_sam.pt
    python tools/web_demo.py --onnx exported/                             # graphs of tools/export_onnx.py

The image is embedded once per image, model and session; every click after that runs only the
decoder. Embeddings live in one LRU cache shared by all sessions (``--cache-size`` entries, keyed by
session, so no session ever sees another's): an evicted one is computed again on the next click.
Every action is a named endpoint for ``gradio_client`` (see docs/web_demo.md), among them
``/segment``: an image plus points/boxes/labels as JSON to SAM records with COCO RLE masks and the
overlay. Without trained weights (``--random-weights``, offline, or SqueezeSAM) a banner on the page
says the masks are meaningless.
"""
import argparse
import copy
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.cli import add_model_arguments, load_predictor, positive_int, run_tool  # noqa: E402
from efficientsam_plugins.image_io import to_rgb  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
EXAMPLES = [os.path.join(REPO, 'data', 'coco_mini', 'val2017', name)
            for name in ('000000002149.jpg', '000000000885.jpg', '000000001993.jpg', '000000005001.jpg')]
# The page's model menu: label -> model name (zoo entries bring the released weights).
MODELS = {'EfficientSAM-Ti': 'efficientsam_ti', 'EfficientSAM-S': 'efficientsam_s', 'SqueezeSAM': 'squeezesam'}
LABELS = {**{name: text for text, name in MODELS.items()}, 'ti': 'EfficientSAM-Ti', 's': 'EfficientSAM-S'}
PALETTE = np.array([(30, 144, 255), (255, 64, 64), (0, 200, 120), (255, 190, 0), (170, 80, 255),
                    (0, 200, 220), (255, 120, 200), (140, 200, 40)], np.float32)
POINT_COLORS = {1: (40, 220, 60), 0: (255, 40, 40)}  # positive, negative click
SESSION_SECONDS = 3600  # a session's state (image, masks) is dropped an hour after its last change
PAGE_CSS = '#banner {background: #fde2e1; border: 2px solid #c62828; border-radius: 6px; padding: 4px 12px}'
NO_NEGATIVE = ('negative clicks need a model built with the negative-click input; {model} was not '
               '(the released EfficientSAM weights take positive clicks only)')


class DemoError(ValueError):
    """Bad input from a user of the page or the API: shown as one message, the server keeps serving."""


@dataclass
class LoadedModel:
    key: Tuple[str, ...]
    label: str
    predictor: Any
    trained: bool

    @property
    def banner(self) -> str:
        if self.trained:
            return ''
        return (f'**RANDOM WEIGHTS: {self.label} runs on untrained weights, so every mask on this page is '
                f'meaningless.** Start the demo with released weights (`--checkpoint`, or online for the zoo).')


@dataclass
class Session:
    """One user's page: their image, model, prompts and last result (kept in ``gr.State``)."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    model_key: Optional[Tuple[str, ...]] = None
    image: Optional[np.ndarray] = None
    digest: str = ''
    mode: str = 'click'
    points: List[Tuple[float, float, int]] = field(default_factory=list)  # x, y, label (1 positive, 0 negative)
    boxes: List[Tuple[float, float, float, float]] = field(default_factory=list)
    corner: Optional[Tuple[float, float]] = None  # the first corner of a box being drawn
    masks: Optional[np.ndarray] = None  # bool [Q, M, H, W]
    iou: Optional[np.ndarray] = None  # [Q, M]
    low_res: Optional[np.ndarray] = None  # [Q, M, h, w] logits
    choice: str = 'best'
    everything: Optional[List[Dict[str, Any]]] = None  # records of the last "Everything"
    timing: str = ''

    def clear_prompts(self) -> None:
        self.points, self.boxes, self.corner = [], [], None
        self.masks = self.iou = self.low_res = self.everything = None


class App:
    """What all sessions share: the loaded models and the LRU cache of image embeddings (each entry
    a shallow copy of the model's predictor: the network is shared, the embedded image is its own)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.models: Dict[Tuple[str, ...], LoadedModel] = {}
        self.cache: 'OrderedDict[tuple, Any]' = OrderedDict()
        self.lock = threading.Lock()  # the cache
        self.load_lock = threading.Lock()  # model loading
        self.embeddings_computed = 0
        self.workdir = tempfile.mkdtemp(prefix='web_demo_')
        self.default_key = self.model_key(onnx=args.onnx, name=args.model, precision=args.precision)

    @staticmethod
    def model_key(name: str = '', precision: str = 'fp32', onnx: Optional[str] = None) -> Tuple[str, ...]:
        return ('onnx', os.path.abspath(onnx)) if onnx else ('torch', name, precision)

    def model(self, key: Tuple[str, ...]) -> LoadedModel:
        """The model of ``key``, loaded once (seeded: random weights are the same in every run)."""
        with self.load_lock:
            if key not in self.models:
                import torch
                args = self.args
                if key[0] == 'onnx':
                    if not os.path.isdir(key[1]):
                        raise DemoError(f'ONNX folder {key[1]} does not exist')
                    options = argparse.Namespace(onnx=key[1], checkpoint=None, random_weights=False)
                    label = f'ONNX export {key[1]}'
                else:
                    checkpoint = args.checkpoint if key[1] == args.model else None
                    options = argparse.Namespace(onnx=None, model=key[1], checkpoint=checkpoint, precision=key[2],
                                                 random_weights=args.random_weights, device=args.device)
                    label = LABELS.get(key[1], os.path.basename(key[1]))
                torch.manual_seed(args.seed)
                try:
                    predictor, trained = load_predictor(options, what='masks of the web demo are')
                except (OSError, ValueError, ImportError) as err:
                    raise DemoError(f'cannot load {label}: {err}') from err
                self.models[key] = LoadedModel(key, label, predictor, trained)
            return self.models[key]

    def embedded(self, session: Session, scope: str = 'page') -> Tuple[Any, Optional[float]]:
        """A predictor holding ``session``'s image, from the cache or embedded now (then the
        encoder's seconds), most recently used last; past ``--cache-size`` the oldest is evicted."""
        if session.image is None:
            raise DemoError('no image yet: upload one, paste one or pick an example')
        key = (session.model_key, scope, session.id, session.digest)
        with self.lock:
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key], None
        predictor = copy.copy(self.model(session.model_key).predictor)
        start = time.perf_counter()
        predictor.set_image(session.image)
        seconds = time.perf_counter() - start
        with self.lock:
            self.embeddings_computed += 1
            self.cache[key] = predictor
            while len(self.cache) > self.args.cache_size:
                self.cache.popitem(last=False)
        return predictor, seconds

    def forget(self, session: Optional[Session]) -> None:
        """Drops what a closed or expired session left: its cached embeddings and its files."""
        if session is None:
            return
        with self.lock:
            for key in [key for key in self.cache if key[2] == session.id]:
                del self.cache[key]
        shutil.rmtree(os.path.join(self.workdir, session.id), ignore_errors=True)

    def session_dir(self, session: Session) -> str:
        path = os.path.join(self.workdir, session.id)
        os.makedirs(path, exist_ok=True)
        return path


def read_image(path: Optional[str], max_pixels: int) -> np.ndarray:
    """An uploaded file as uint8 RGB, refused (before decoding) if not an image or over ``max_pixels``."""
    if path is None:
        raise DemoError('no image given')
    try:
        with Image.open(path) as picture:
            width, height = picture.size
            if width * height > max_pixels:
                raise DemoError(f'the image is {width}x{height} ({width * height / 1e6:.1f} MP); this demo takes '
                                f'at most {max_pixels / 1e6:.1f} MP: downscale it first')
            return to_rgb(picture, os.path.basename(path))  # as a viewer shows it: EXIF, 16-bit, alpha rules
    except ValueError as err:
        raise DemoError(str(err)) from None
    except (Image.UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise DemoError(f'{os.path.basename(path)} is not an image this demo can read (PNG, JPEG, WebP, ...): '
                        f'{err}') from None


def digest(image: np.ndarray) -> str:
    """What names an image in the embedding cache."""
    return hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()


def set_image(app: App, session: Session, image: np.ndarray) -> Session:
    session.image = image
    session.digest = digest(image)
    session.clear_prompts()
    session.model_key = session.model_key or app.default_key
    _, seconds = app.embedded(session)
    session.timing = f'encoder {seconds * 1000:.0f} ms (once for this image)' if seconds is not None else ''
    return session


def _check_xy(session: Session, x: float, y: float) -> Tuple[float, float]:
    height, width = session.image.shape[:2]
    if x is None or y is None or not (0 <= x <= width and 0 <= y <= height):
        raise DemoError(f'the point ({x}, {y}) lies outside the {width}x{height} image')
    return float(x), float(y)


def decode(app: App, session: Session) -> Session:
    """Decodes the session's prompts: the clicks as one query, or every box as its own query, in one call."""
    if not session.points and not session.boxes:
        session.masks = session.iou = session.low_res = None
        return session
    predictor, seconds = app.embedded(session)
    start = time.perf_counter()
    if session.mode == 'click':
        prompt = np.array(session.points, np.float32)
        masks, iou, low_res = predictor.predict(points=prompt[:, :2], point_labels=prompt[:, 2])
    else:
        masks, iou, low_res = predictor.predict(boxes=np.array(session.boxes, np.float32))
    decoder = time.perf_counter() - start
    session.masks, session.iou, session.low_res, session.everything = masks, iou, low_res, None
    encoder = '' if seconds is None else f'encoder {seconds * 1000:.0f} ms (embedding computed again) · '
    session.timing = f'{encoder}decoder {decoder * 1000:.0f} ms ({len(masks)} quer{"y" if len(masks) == 1 else "ies"})'
    return session


def add_point(app: App, session: Session, x: float, y: float, negative: bool = False) -> Session:
    _require_image(session)
    x, y = _check_xy(session, x, y)
    if negative and not app.model(session.model_key).predictor.supports_negative_points:
        raise DemoError(NO_NEGATIVE.format(model=app.model(session.model_key).label))
    if session.mode != 'click':
        session.clear_prompts()
        session.mode = 'click'
    session.points.append((x, y, 0 if negative else 1))
    return decode(app, session)


def add_box(app: App, session: Session, x1: float, y1: float, x2: float, y2: float) -> Session:
    _require_image(session)
    (x1, y1), (x2, y2) = _check_xy(session, x1, y1), _check_xy(session, x2, y2)
    x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise DemoError(f'the box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has no area: drag or click two opposite '
                        f'corners at least one pixel apart')
    if session.mode != 'box':
        session.clear_prompts()
        session.mode = 'box'
    session.corner = None
    session.boxes.append((x1, y1, x2, y2))
    return decode(app, session)


def click(app: App, session: Session, mode: str, x: float, y: float, negative: bool) -> Session:
    """A click on the page's image: a point in click mode; in box mode the first or second corner."""
    _require_image(session)
    if mode == 'click':
        return add_point(app, session, x, y, negative)
    x, y = _check_xy(session, x, y)
    if session.corner is None:
        if session.mode != 'box':
            session.clear_prompts()
            session.mode = 'box'
        session.corner = (x, y)
        session.timing = 'first corner set: click the opposite corner'
        return session
    corner, session.corner = session.corner, None
    return add_box(app, session, *corner, x, y)


def undo(app: App, session: Session) -> Session:
    _require_image(session)
    if session.corner is not None:
        session.corner = None
    elif session.mode == 'click' and session.points:
        session.points.pop()
    elif session.boxes:
        session.boxes.pop()
    return decode(app, session)


def clear(app: App, session: Session) -> Session:
    _require_image(session)
    session.clear_prompts()
    session.timing = ''
    return session


def _require_image(session: Session) -> None:
    if session.image is None:
        raise DemoError('no image yet: upload one, paste one or pick an example')


def selected(session: Session) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bool masks [Q, H, W], iou [Q], candidate [Q]): per query the chosen candidate (the best by default)."""
    best = session.iou.argmax(1)
    chosen = best if session.choice == 'best' else np.full_like(best, int(session.choice) - 1)
    rows = np.arange(len(chosen))
    return session.masks[rows, chosen], session.iou[rows, chosen], chosen


def records(session: Session) -> List[Dict[str, Any]]:
    """The shown masks as the generator's records (uncompressed COCO RLE, bbox XYWH, scores)."""
    import torch

    from efficientsam_plugins.mask_generation import (
        masks_to_boxes,
        masks_to_rle,
        rle_area,
        rle_for_json,
        stability_score,
    )
    if session.everything is not None:
        return session.everything
    if session.masks is None:
        return []
    masks, iou, chosen = selected(session)
    tensor = torch.from_numpy(masks)
    logits = torch.from_numpy(session.low_res[np.arange(len(chosen)), chosen])
    stability = stability_score(logits, 0.0, 1.0).tolist()
    height, width = masks.shape[1:]
    prompts = ([[list(p[:2]) for p in session.points]] if session.mode == 'click'
               else [[[b[0], b[1]], [b[2], b[3]]] for b in session.boxes])
    result = []
    for rle, box, score, stable, prompt in zip(masks_to_rle(tensor), masks_to_boxes(tensor).tolist(), iou.tolist(),
                                               stability, prompts):
        result.append({'segmentation': rle_for_json(rle), 'area': rle_area(rle),
                       'bbox': [box[0], box[1], box[2] - box[0], box[3] - box[1]], 'predicted_iou': score,
                       'point_coords': prompt, 'stability_score': stable, 'crop_box': [0, 0, width, height]})
    return result


def union_mask(session: Session) -> Optional[np.ndarray]:
    """Bool [H, W]: every shown mask together (None when nothing is segmented)."""
    from efficientsam_plugins.mask_generation import rle_to_mask
    if session.everything is not None:
        if not session.everything:
            return None
        mask = np.zeros(session.image.shape[:2], bool)
        for record in session.everything:
            mask |= rle_to_mask(record['segmentation'])
        return mask
    if session.masks is None:
        return None
    return selected(session)[0].any(0)


def overlay(session: Session) -> Optional[np.ndarray]:
    """The image with the shown masks in colour (one per mask), the clicks and the boxes."""
    from efficientsam_plugins.mask_generation import rle_to_mask
    if session.image is None:
        return None
    pixels = session.image.astype(np.float32)
    if session.everything is not None:
        order = sorted(range(len(session.everything)), key=lambda i: -session.everything[i]['area'])
        colours = np.random.default_rng(0).integers(40, 256, (len(order), 3)).astype(np.float32)
        for rank, index in enumerate(order):  # larger masks first, so small ones stay visible
            mask = rle_to_mask(session.everything[index]['segmentation'])
            pixels[mask] = 0.45 * pixels[mask] + 0.55 * colours[rank]
    elif session.masks is not None:
        for index, mask in enumerate(selected(session)[0]):
            pixels[mask] = 0.45 * pixels[mask] + 0.55 * PALETTE[index % len(PALETTE)]
    picture = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    radius = max(3, round(max(picture.size) / 120))
    for x, y, label in session.points:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=POINT_COLORS[label], outline=(255,) * 3)
    for index, box in enumerate(session.boxes):
        draw.rectangle(box, outline=tuple(int(c) for c in PALETTE[index % len(PALETTE)]), width=max(2, radius // 2))
    if session.corner is not None:
        x, y = session.corner
        draw.line((x - 2 * radius, y, x + 2 * radius, y), fill=(255, 255, 0), width=2)
        draw.line((x, y - 2 * radius, x, y + 2 * radius), fill=(255, 255, 0), width=2)
    return np.asarray(picture)


def everything(app: App, session: Session, points_per_side: int = 16, coarse_points_per_side: int = 0,
               crop_n_layers: int = 0, pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
               box_nms_thresh: float = 0.7, progress: bool = False) -> Session:
    """Segments everything with the automatic mask generator (its records kept for the downloads)."""
    from efficientsam_plugins.automatic_mask_generator import AutomaticMaskGenerator
    _require_image(session)
    predictor = copy.copy(app.model(session.model_key or app.default_key).predictor)  # its own image state
    try:
        generator = AutomaticMaskGenerator(
            predictor, points_per_side=int(points_per_side), crop_n_layers=int(crop_n_layers),
            coarse_points_per_side=int(coarse_points_per_side) or None, pred_iou_thresh=float(pred_iou_thresh),
            stability_score_thresh=float(stability_score_thresh), box_nms_thresh=float(box_nms_thresh),
            output_mode='uncompressed_rle')
    except (ValueError, TypeError) as err:
        raise DemoError(str(err)) from None
    start = time.perf_counter()
    found = generator.generate(session.image, progress=progress)
    session.clear_prompts()
    session.everything = found
    session.timing = (f'everything: {int(points_per_side)}x{int(points_per_side)} grid in '
                      f'{time.perf_counter() - start:.1f} s (the generator embeds the image again)')
    return session


def cutout(app: App, session: Session, threshold: float = 0.5) -> Session:
    """One tap: five clicks on the most salient blob (spectral residual saliency), the best mask."""
    from efficientsam_plugins.cutout import salient_blob_and_clicks, spectral_residual_saliency
    _require_image(session)
    _, clicks = salient_blob_and_clicks(spectral_residual_saliency(session.image), threshold)
    session.clear_prompts()
    session.mode = 'click'
    session.points = [(float(x), float(y), 1) for x, y in clicks]
    session.choice = 'best'
    return decode(app, session)


def write_png(app: App, session: Session, name: str, pixels: np.ndarray) -> str:
    path = os.path.join(app.session_dir(session), name)
    Image.fromarray(pixels).save(path)
    return path


def cutout_png(app: App, session: Session) -> str:
    """The image with the shown mask(s) as alpha: a transparent PNG."""
    mask = union_mask(session)
    if mask is None:
        raise DemoError('nothing is segmented yet: click, draw a box or use the one-tap cut-out first')
    return write_png(app, session, 'cutout.png', np.dstack([session.image, mask.astype(np.uint8) * 255]))


def downloads(app: App, session: Session) -> Tuple[Optional[str], Optional[str]]:
    """(mask PNG: 255 on the shown masks, JSON of their records), or Nones before any mask."""
    mask = union_mask(session)
    if mask is None:
        return None, None
    path = os.path.join(app.session_dir(session), 'masks.json')
    with open(path, 'w', encoding='utf-8') as stream:
        json.dump(records(session), stream)
    return write_png(app, session, 'mask.png', mask.astype(np.uint8) * 255), path


def parse_prompts(text: str) -> Dict[str, Any]:
    """The ``/segment`` prompts: a JSON object with ``points`` [[x, y], ...] (one object, refined by
    every point), ``labels`` (1 positive, 0 negative), ``boxes`` [[x1, y1, x2, y2], ...] (one
    object each) and ``multimask`` (all three candidates instead of the best)."""
    try:
        prompts = json.loads(text or '{}')
    except json.JSONDecodeError as err:
        raise DemoError(f'prompts are not valid JSON: {err}') from None
    if not isinstance(prompts, dict):
        raise DemoError(f'prompts must be a JSON object with points/labels/boxes, got {type(prompts).__name__}')
    unknown = sorted(set(prompts) - {'points', 'labels', 'boxes', 'multimask'})
    if unknown:
        raise DemoError(f'unknown prompt keys {unknown}: use points, labels, boxes, multimask')
    if not prompts.get('points') and not prompts.get('boxes'):
        raise DemoError('no prompt: give "points" [[x, y], ...] and/or "boxes" [[x1, y1, x2, y2], ...]')
    for name, width in (('points', 2), ('boxes', 4)):
        if prompts.get(name):
            try:
                array = np.asarray(prompts[name], dtype=np.float64)
            except (TypeError, ValueError):
                array = np.zeros(0)
            if array.ndim != 2 or array.shape[1] != width:
                raise DemoError(f'"{name}" must be a list of {width} numbers each, got {prompts[name]!r:.80}')
    if prompts.get('boxes'):
        boxes = np.asarray(prompts['boxes'], dtype=np.float64)
        flat = (boxes[:, 2] - boxes[:, 0] < 1) | (boxes[:, 3] - boxes[:, 1] < 1)
        if flat.any():
            raise DemoError(f'the box {prompts["boxes"][int(flat.argmax())]} has no area: x2 - x1 and y2 - y1 '
                            f'must be at least 1 pixel')
    return prompts


def segment(app: App, session: Session, image_path: str, prompts_text: str) -> Tuple[List[Dict[str, Any]],
                                                                                      np.ndarray]:
    """The one-call service: (records with COCO RLE masks, overlay) of an image and JSON prompts."""
    image = read_image(image_path, app.args.max_pixels)
    prompts = parse_prompts(prompts_text)
    work = Session(id=session.id, model_key=session.model_key or app.default_key)
    work.digest = digest(image)
    work.image = image
    predictor, _ = app.embedded(work, scope='segment')
    multimask = bool(prompts.get('multimask', False))
    points = prompts.get('points') or None
    try:
        masks, iou, low_res = predictor.predict(points=points, point_labels=prompts.get('labels'),
                                                boxes=prompts.get('boxes') or None, best_only=not multimask)
    except ValueError as err:
        raise DemoError(str(err)) from None
    work.masks, work.iou, work.low_res = masks, iou, low_res
    work.mode = 'box' if points is None else 'click'
    labels = prompts.get('labels') or [1] * len(points or [])
    work.points = [(float(x), float(y), int(label)) for (x, y), label in zip(points or [], labels)]
    work.boxes = [tuple(map(float, box)) for box in prompts.get('boxes') or []]
    found = []
    for candidate in range(masks.shape[1]):
        work.choice = str(candidate + 1)
        found.extend(records(work))
    work.choice = 'best'
    return found, overlay(work)


# ----------------------------------------------------------------------------------------------- the page


def user_errors(function):
    """Handler wrapper: bad input becomes one ``gr.Error`` message in the page (no traceback)."""
    import gradio as gr

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (DemoError, ValueError, OSError) as err:
            raise gr.Error(str(err), print_exception=False) from None
    return wrapper


def build_page(app: App):
    """The Gradio Blocks of the demo; every action is a named API endpoint."""
    import gradio as gr

    def checked_upload(preprocess):
        """gr.Image's preprocess (it opens the file with PIL), naming a non-image file in one message.
        Wrapped on the instance: a subclass of a Gradio component makes Gradio write a .pyi beside this file."""
        @functools.wraps(preprocess)
        def wrapper(payload):
            try:
                return preprocess(payload)
            except (Image.UnidentifiedImageError, Image.DecompressionBombError) as err:
                raise gr.Error(f'the upload is not an image this demo can read (PNG, JPEG, WebP, ...): {err}',
                               print_exception=False) from None
        return wrapper

    default = app.model(app.default_key)
    model_choices = list(MODELS) + ([] if app.args.model in MODELS.values() or app.args.onnx else [app.args.model])
    if app.args.onnx:
        model_choices.append(f'ONNX: {app.args.onnx}')
    default_choice = (f'ONNX: {app.args.onnx}' if app.args.onnx else
                      next((text for text, name in MODELS.items() if name == app.args.model), app.args.model))

    def ensure(state: Optional[Session]) -> Session:
        return state if state is not None else Session(model_key=app.default_key)

    def view(session: Session):
        mask_path, json_path = downloads(app, session)
        if session.masks is not None and session.everything is None:
            lines = [f'query {q + 1}: ' + ' · '.join(f'{c + 1}: IoU {v:.3f}' for c, v in enumerate(row))
                     for q, row in enumerate(session.iou.tolist())]
            candidates = '**Candidates (predicted IoU)**  \n' + '  \n'.join(lines)
        else:
            candidates = ''
        count = '' if session.everything is None else f'**{len(session.everything)} mask(s)**'
        info = ' · '.join(filter(None, [session.timing, count]))
        return session, overlay(session), info, candidates, mask_path, json_path

    def model_view(session: Session):
        loaded = app.model(session.model_key)
        negative = loaded.predictor.supports_negative_points
        return (gr.update(value=loaded.banner, visible=not loaded.trained),
                gr.update(interactive=negative, value=False,
                          info='' if negative else NO_NEGATIVE.format(model=loaded.label)))

    with gr.Blocks(title='EfficientSAM web demo', analytics_enabled=False, delete_cache=(600, 3600)) as page:
        state = gr.State(None, time_to_live=SESSION_SECONDS, delete_callback=app.forget)
        gr.Markdown('## EfficientSAM web demo: click, box, everything, cut-out')
        banner = gr.Markdown(default.banner, visible=not default.trained, elem_id='banner')
        with gr.Row():
            with gr.Column(scale=1):
                image_in = gr.Image(type='filepath', image_mode=None, sources=['upload', 'clipboard'],
                                    label='Image (upload or paste)', elem_id='image_in')
                image_in.preprocess = checked_upload(image_in.preprocess)
                gr.Examples(EXAMPLES, inputs=image_in, label='Examples (COCO val2017)')
                with gr.Row():
                    model = gr.Dropdown(model_choices, value=default_choice, label='Model', elem_id='model')
                    precision = gr.Dropdown(['fp32', 'bf16', 'fp16'], value=app.args.precision,
                                            label='Precision (PyTorch)')
                onnx_dir = gr.Textbox(label='ONNX export folder (tools/export_onnx.py --out DIR)',
                                      placeholder='exported/')
                load_onnx = gr.Button('Load ONNX export')
            with gr.Column(scale=2):
                with gr.Row():
                    mode = gr.Radio(['click', 'box'], value='click', label='Mode', elem_id='mode',
                                    info='click: points refine one object; box: click two opposite corners, '
                                         'every box is its own object')
                    negative = gr.Checkbox(label='Negative click', elem_id='negative')
                    candidate = gr.Radio(['best', '1', '2', '3'], value='best', label='Candidate', elem_id='candidate')
                result = gr.Image(label='Click on the image', interactive=False, format='png', elem_id='overlay')
                info = gr.Markdown(elem_id='info')
                candidates = gr.Markdown(elem_id='candidates')
                with gr.Row():
                    undo_button = gr.Button('Undo', elem_id='undo')
                    clear_button = gr.Button('Clear', elem_id='clear')
                    cutout_button = gr.Button('One-tap cut-out', elem_id='cutout')
                    cut_selected = gr.Button('Cut out the selected mask', elem_id='cut_selected')
                with gr.Row():
                    mask_file = gr.File(label='Mask (PNG)', elem_id='mask_file')
                    json_file = gr.File(label='Masks (COCO RLE JSON records)', elem_id='json_file')
                    cutout_file = gr.File(label='Cut-out (transparent PNG)', elem_id='cutout_file')
                with gr.Accordion('Everything (automatic mask generator)', open=False):
                    with gr.Row():
                        points_per_side = gr.Slider(2, 64, value=16, step=1, label='Points per side',
                                                    elem_id='points_per_side')
                        coarse = gr.Slider(0, 32, value=0, step=1, label='Coarse points per side (0: off)')
                        crop_layers = gr.Slider(0, 2, value=0, step=1, label='Crop layers')
                    with gr.Row():
                        iou_thresh = gr.Slider(0, 1, value=0.88, label='Predicted IoU threshold', elem_id='iou_thresh')
                        stability_thresh = gr.Slider(0, 1, value=0.95, label='Stability threshold',
                                                     elem_id='stability_thresh')
                        nms_thresh = gr.Slider(0, 1, value=0.7, label='Box NMS threshold')
                    everything_button = gr.Button('Segment everything', variant='primary', elem_id='everything')
                with gr.Accordion('Prompts by coordinates', open=False):
                    with gr.Row():
                        x, y = gr.Number(label='x'), gr.Number(label='y')
                        add_point_button = gr.Button('Add point')
                    with gr.Row():
                        x1, y1, x2, y2 = (gr.Number(label=name) for name in ('x1', 'y1', 'x2', 'y2'))
                        add_box_button = gr.Button('Add box')
                with gr.Accordion('API: segment (image + JSON prompts -> COCO RLE records + overlay)', open=False):
                    api_image = gr.File(label='Image', file_types=['image'])
                    api_prompts = gr.Textbox(label='Prompts (JSON)', value='{"points": [[100, 100]], "labels": [1]}')
                    api_button = gr.Button('Segment')
                    api_records = gr.JSON(label='Records')
                    api_overlay = gr.Image(label='Overlay', interactive=False, format='png')
        outputs = [state, result, info, candidates, mask_file, json_file]

        @user_errors
        def on_image(path, session):
            session = ensure(session)
            if path is None:
                session.image = None
                session.clear_prompts()
                return session, None, '', '', None, None
            return view(set_image(app, session, read_image(path, app.args.max_pixels)))

        @user_errors
        def on_select(session, chosen_mode, is_negative, event: gr.SelectData):
            x, y = event.index
            return view(click(app, ensure(session), chosen_mode, x, y, is_negative))

        @user_errors
        def on_point(session, px, py, is_negative):
            return view(add_point(app, ensure(session), px, py, is_negative))

        @user_errors
        def on_box(session, bx1, by1, bx2, by2):
            return view(add_box(app, ensure(session), bx1, by1, bx2, by2))

        @user_errors
        def on_undo(session):
            return view(undo(app, ensure(session)))

        @user_errors
        def on_clear(session):
            return view(clear(app, ensure(session)))

        @user_errors
        def on_candidate(session, choice):
            session = ensure(session)
            session.choice = choice
            return view(session)

        tracker = gr.Progress(track_tqdm=True)  # the generator's tqdm bar, shown in the page

        @user_errors
        def on_everything(session, side, coarse_side, layers, iou_value, stability_value, nms_value,
                          progress=tracker):
            return view(everything(app, ensure(session), side, coarse_side, layers, iou_value, stability_value,
                                   nms_value, progress=True))

        @user_errors
        def on_cutout(session):
            session = cutout(app, ensure(session))
            return (*view(session), cutout_png(app, session))

        @user_errors
        def on_cut_selected(session):
            return cutout_png(app, ensure(session))

        @user_errors
        def on_model(session, choice, chosen_precision, folder=None):
            session = ensure(session)
            if folder is not None:
                if not folder.strip():
                    raise DemoError('give the folder that tools/export_onnx.py --out wrote')
                key = app.model_key(onnx=folder.strip())
            elif choice.startswith('ONNX: '):
                key = app.model_key(onnx=choice[len('ONNX: '):])
            else:
                key = app.model_key(name=MODELS.get(choice, choice), precision=chosen_precision)
            app.model(key)  # loads it, or says why not
            session.model_key = key
            session.clear_prompts()
            if session.image is not None:
                set_image(app, session, session.image)
            return (*view(session), *model_view(session))

        @user_errors
        def on_segment(session, path, prompts):
            return segment(app, ensure(session), path, prompts)

        @user_errors
        def on_mode(session, chosen_mode):
            session = ensure(session)
            if session.image is not None and chosen_mode != session.mode:
                session.clear_prompts()
                session.mode = chosen_mode
            return view(session)

        model_work = dict(concurrency_id='model')  # --concurrency bounds all model work together
        image_in.change(on_image, [image_in, state], outputs, api_name='set_image', **model_work)
        result.select(on_select, [state, mode, negative], outputs, api_visibility='private', **model_work)
        add_point_button.click(on_point, [state, x, y, negative], outputs, api_name='add_point', **model_work)
        add_box_button.click(on_box, [state, x1, y1, x2, y2], outputs, api_name='add_box', **model_work)
        undo_button.click(on_undo, [state], outputs, api_name='undo', **model_work)
        clear_button.click(on_clear, [state], outputs, api_name='clear', **model_work)
        candidate.change(on_candidate, [state, candidate], outputs, api_name='select_candidate', **model_work)
        mode.change(on_mode, [state, mode], outputs, api_name='set_mode', **model_work)
        everything_button.click(on_everything, [state, points_per_side, coarse, crop_layers, iou_thresh,
                                                stability_thresh, nms_thresh], outputs, api_name='everything',
                                **model_work)
        cutout_button.click(on_cutout, [state], outputs + [cutout_file], api_name='cutout', **model_work)
        cut_selected.click(on_cut_selected, [state], [cutout_file], api_name='cutout_selected', **model_work)
        model_outputs = outputs + [banner, negative]
        model.change(on_model, [state, model, precision], model_outputs, api_name='set_model', **model_work)
        precision.change(on_model, [state, model, precision], model_outputs, api_visibility='private', **model_work)
        load_onnx.click(on_model, [state, model, precision, onnx_dir], model_outputs, api_name='load_onnx',
                        **model_work)
        api_button.click(on_segment, [state, api_image, api_prompts], [api_records, api_overlay], api_name='segment',
                         **model_work)
        page.load(lambda: model_view(Session(model_key=app.default_key)), None, [banner, negative],
                  api_visibility='private')
    page.queue(max_size=app.args.queue_size, default_concurrency_limit=app.args.concurrency)
    return page


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--host', default='127.0.0.1', help='address to serve on (0.0.0.0: every interface)')
    parser.add_argument('--port', default=7860, type=positive_int)
    add_model_arguments(parser, default='efficientsam_ti')
    parser.add_argument('--seed', default=0, type=int, help='torch seed before building a model (random weights)')
    parser.add_argument('--cache-size', default=16, type=positive_int,
                        help='image embeddings kept, all sessions together (LRU; default 16, 4 MB each for '
                             'EfficientSAM at 1024)')
    parser.add_argument('--queue-size', default=64, type=positive_int, help='requests waiting at most (default 64)')
    parser.add_argument('--concurrency', default=2, type=positive_int,
                        help='requests running at once, all actions together (default 2)')
    parser.add_argument('--max-pixels', default=4096 * 4096, type=positive_int,
                        help='largest image accepted, in pixels (default 4096x4096)')
    parser.add_argument('--benchmark', metavar='JSON', help='serve nothing: time the click-to-mask path of '
                        '--model on the bundled photo (after the image is embedded) and write the figures here')
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, argv=None, clicks: int = 20) -> List[Dict[str, Any]]:
    """Times what a click costs once the image is embedded: the predictor alone (decoder and the
    upsampling of 3 candidates) and the whole handler (plus the overlay, the mask PNG and the JSON
    records), as medians over ``clicks`` random single clicks; writes them with
    :func:`~efficientsam_plugins.cli.write_benchmark_json`."""
    import statistics

    from efficientsam_plugins.cli import write_benchmark_json
    app = App(args)
    session = Session(model_key=app.default_key)
    image = read_image(EXAMPLES[0], args.max_pixels)
    start = time.perf_counter()
    set_image(app, session, image)
    embed = time.perf_counter() - start
    predictor, _ = app.embedded(session)
    rng = np.random.default_rng(0)
    decoder, handler = [], []
    for x, y in rng.uniform(0, 1, (clicks, 2)) * (image.shape[1], image.shape[0]):
        start = time.perf_counter()
        predictor.predict(points=[[x, y]])
        decoder.append(time.perf_counter() - start)
        clear(app, session)
        start = time.perf_counter()
        add_point(app, session, x, y)
        overlay(session)
        downloads(app, session)
        handler.append(time.perf_counter() - start)
    loaded = app.model(app.default_key)
    rows = [{'model': loaded.label, 'image': f'{image.shape[1]}x{image.shape[0]}', 'clicks': clicks,
             'embed ms': round(embed * 1000), 'predict median ms': round(statistics.median(decoder) * 1000, 1),
             'click handler median ms': round(statistics.median(handler) * 1000, 1)}]
    notes = ('one click after the image is embedded: "predict" is the decoder plus the upsampling of 3 candidate '
             'masks; "click handler" adds the overlay, the mask PNG and the JSON records the page returns (the '
             'HTTP round trip is not included)' + ('' if loaded.trained else '; random weights (speed only)'))
    write_benchmark_json(args.benchmark, 'tools/web_demo.py', argv, rows, notes)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.benchmark:
        print(json.dumps(benchmark(args, argv)))
        return 0
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise ImportError('the web demo needs Gradio: pip install -e .[app]') from err
    page = build_page(App(args))
    page.launch(server_name=args.host, server_port=args.port, show_error=True, ssr_mode=False,
                max_file_size='50mb', footer_links=['api'], css=PAGE_CSS)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
