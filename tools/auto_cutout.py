"""One-tap cut-out: saliency map -> five clicks on the most salient object -> mask -> RGBA PNG.

    python tools/auto_cutout.py photo.jpg --out cutout.png
    python tools/auto_cutout.py photo.jpg --model squeezesam --checkpoint squeeze_sam.pt --out cutout.png
    python tools/auto_cutout.py photo.jpg --saliency photo_saliency.png --out cutout.png

The clicks follow SqueezeSAM's rule (``efficientsam_plugins.cutout``): the
map is thresholded (``--threshold``), the 8-connected blob with the largest summed saliency is
kept, and its centre of mass plus those of its four sections (quadrants along its principal axes)
are clicked, each snapped onto the blob. Without ``--saliency`` the map is the spectral residual
(Hou & Zhang 2007), which needs no weights; ``--saliency`` takes any salient-object model's map:
an image (grey, or RGB read as grey; 8- or 16-bit, scaled by its maximum value; float maps in
[0, 1]) or a ``.npy`` array, of the image's aspect ratio at any resolution.

Writes ``--out`` (the image with the mask as alpha, at full size) and ``--overlay`` (default
``<out>_overlay.png``): the saliency map with the blob's outline and the clicks, the mask over the
image, and the cut-out on a checkerboard. Without ``--checkpoint`` the released weights come from
the model zoo; where that is impossible (offline; always for SqueezeSAM, whose weights were never
published) or with ``--random-weights`` it runs end to end on random weights and says so.
"""
import argparse
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.cli import (  # noqa: E402  # noqa: E402
    add_model_arguments,
    load_predictor,
    positive_fraction,
    run_tool,
)
from efficientsam_plugins.fileio import atomic_write, check_output_path  # noqa: E402
from efficientsam_plugins.image_io import read_image  # noqa: E402

CLICK_COLORS = ((255, 48, 48), (255, 210, 0))  # the whole blob's click, the sections' clicks
MASK_COLOR = (0, 200, 120)
# Anchors of the saliency heat map (black, purple, red, orange, pale yellow), evenly spaced in [0, 1].
HEAT_ANCHORS = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)], np.float32)
ASPECT_TOLERANCE = 0.02  # a map of another aspect ratio is taken for the map of another image


def check_image_output(flag: str, path: str, png_only: bool) -> str:
    """Rejects, before any work, an output this tool could not write; returns PIL's format name."""
    if os.path.isdir(path):
        raise IsADirectoryError(f'{flag} {path} is a folder; give a file name such as cutout.png')
    extension = os.path.splitext(path)[1].lower()
    image_format = Image.registered_extensions().get(extension)
    if png_only and image_format != 'PNG':
        raise ValueError(f'{flag} {path} must be a .png file: the cut-out needs an alpha channel')
    if image_format is None:
        raise ValueError(f'{flag} {path}: unknown image extension {extension or "(none)"!r}; use .png')
    check_output_path(path)
    return image_format


def read_saliency(path: str) -> np.ndarray:
    """A map file as an array :func:`salient_clicks` reads: ``.npy`` as stored; images as uint8
    grey, 16-bit ones as uint16, float ('F') ones as float32."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'--saliency map not found: {path}')
    if path.lower().endswith('.npy'):
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f'cannot read --saliency {path}: not a numpy .npy array ({err})') from err
    try:
        with Image.open(path) as opened:
            if opened.mode.startswith('I;16'):
                return np.asarray(opened).astype(np.uint16)
            if opened.mode == 'I':  # how PIL may open a 16-bit grey PNG
                values = np.asarray(opened)
                if values.min() < 0 or values.max() > np.iinfo(np.uint16).max:
                    raise ValueError(f'--saliency {path}: 32-bit integer values beyond 16 bits; '
                                     f'save the map as 8- or 16-bit grey or as a float .npy')
                return values.astype(np.uint16)
            if opened.mode == 'F':
                return np.asarray(opened)
            return np.asarray(opened.convert('L'))
    except OSError as err:
        raise ValueError(f'cannot read --saliency {path}: not an image file, or a damaged one ({err})') from err


def saliency_for(image: np.ndarray, path):
    """(map [H, W] in [0, 1] at the image's size, its source in words)."""
    from efficientsam_plugins.cutout import resize_saliency, spectral_residual_saliency
    if path is None:
        return spectral_residual_saliency(image), 'spectral residual'
    saliency = read_saliency(path)
    h, w = image.shape[:2]
    if saliency.ndim == 2 and 0 not in saliency.shape:
        aspect, image_aspect = saliency.shape[1] / saliency.shape[0], w / h
        if abs(aspect / image_aspect - 1) > ASPECT_TOLERANCE:
            raise ValueError(f'--saliency {path} is {saliency.shape[1]}x{saliency.shape[0]} but the image is '
                             f'{w}x{h}: another aspect ratio, so not a map of this image')
    try:
        return resize_saliency(saliency, (h, w)), path
    except ValueError as err:
        raise ValueError(f'--saliency {path}: {err}') from err


def heat_map(saliency: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` of a map in [0, 1] (dark: not salient, bright yellow: salient)."""
    stops = np.linspace(0, 1, len(HEAT_ANCHORS))
    channels = [np.interp(saliency, stops, HEAT_ANCHORS[:, c]) for c in range(3)]
    return np.stack(channels, -1).astype(np.uint8)


def outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Bool ``[H, W]``: the pixels of ``mask`` next to its outside, thickened to ``width``."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    edge = Image.fromarray(((mask & ~interior) * 255).astype(np.uint8))
    size = 2 * (width // 2) + 1
    return np.asarray(edge.filter(ImageFilter.MaxFilter(size)) if size > 1 else edge) > 0


def draw_clicks(panel: Image.Image, clicks: np.ndarray, radius: int) -> Image.Image:
    draw = ImageDraw.Draw(panel)
    for index, (x, y) in enumerate(clicks):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=CLICK_COLORS[index > 0],
                     outline=(255, 255, 255), width=max(1, radius // 3))
    return panel


def overlay_panels(image: np.ndarray, saliency: np.ndarray, blob: np.ndarray, clicks: np.ndarray,
                   mask: np.ndarray) -> Image.Image:
    """Saliency with the blob's outline and the clicks | mask over the image | cut-out on a checkerboard."""
    h, w = mask.shape
    radius, line = max(4, round(min(h, w) / 90)), max(1, round(min(h, w) / 300))
    heat = heat_map(saliency)
    heat[outline(blob, line)] = 255
    pixels = image.astype(np.float32)
    pixels[mask] = 0.45 * pixels[mask] + 0.55 * np.asarray(MASK_COLOR, np.float32)
    pixels[outline(mask, line)] = 255
    square = max(8, round(min(h, w) / 40))
    rows, cols = np.indices((h, w)) // square
    checker = np.where(((rows + cols) % 2 == 0)[..., None], 200, 150).astype(np.float32)
    cutout = np.where(mask[..., None], image.astype(np.float32), checker)
    panels = [draw_clicks(Image.fromarray(heat), clicks, radius),
              draw_clicks(Image.fromarray(pixels.astype(np.uint8)), clicks, radius),
              Image.fromarray(cutout.astype(np.uint8))]
    return Image.fromarray(np.concatenate([np.asarray(panel) for panel in panels], axis=1))


def save_image(picture: Image.Image, path: str, image_format: str) -> None:
    atomic_write(path, lambda tmp: picture.save(tmp, format=image_format))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image', help='RGB image')
    parser.add_argument('--out', required=True, help='RGBA cut-out (.png): the image with the mask as alpha')
    parser.add_argument('--overlay', help='PNG of saliency, clicks and mask (default: <out>_overlay.png)')
    add_model_arguments(parser, default='efficientsam_ti')
    parser.add_argument('--saliency', help="a salient-object model's map of the image (.png or other "
                        'image, or .npy); default: the spectral residual of the image')
    parser.add_argument('--threshold', default=0.5, type=positive_fraction,
                        help='saliency threshold of the blob, in (0, 1] (default: 0.5)')
    args = parser.parse_args(argv)

    out_format = check_image_output('--out', args.out, png_only=True)
    overlay_path = args.overlay or f'{os.path.splitext(args.out)[0]}_overlay.png'
    if os.path.abspath(overlay_path) == os.path.abspath(args.out):
        raise ValueError(f'--overlay and --out are the same file ({args.out}); give two names')
    overlay_format = check_image_output('--overlay', overlay_path, png_only=False)
    image = read_image(args.image)

    from efficientsam_plugins.cutout import salient_blob_and_clicks
    start = time.perf_counter()
    saliency, source = saliency_for(image, args.saliency)
    saliency_seconds = time.perf_counter() - start
    start = time.perf_counter()
    try:
        blob, clicks = salient_blob_and_clicks(saliency, args.threshold)
    except ValueError as err:
        raise ValueError(f'{source} saliency: {err}') from err
    click_seconds = time.perf_counter() - start
    print(f'saliency ({source}) in {saliency_seconds:.2f}s; most salient blob: {int(blob.sum())} pixels; '
          f'{len(clicks)} clicks in {click_seconds:.2f}s: '
          + ' '.join(f'({x:.0f}, {y:.0f})' for x, y in clicks))

    predictor, trained = load_predictor(args, what='mask below is')

    start = time.perf_counter()
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(points=clicks, best_only=True)
    segment_seconds = time.perf_counter() - start
    mask = masks[0, 0]
    print(f'{args.model} mask in {segment_seconds:.2f}s (predicted IoU {scores[0, 0]:.3f}, '
          f'{int(mask.sum())} pixels); cut-out runtime without model loading '
          f'{saliency_seconds + click_seconds + segment_seconds:.2f}s')
    if not mask.any():
        print('WARNING: the mask is empty, so the cut-out is fully transparent', file=sys.stderr)

    cutout = Image.fromarray(np.concatenate([image, (mask * 255).astype(np.uint8)[..., None]], axis=-1))
    save_image(cutout, args.out, out_format)
    save_image(overlay_panels(image, saliency, blob, clicks, mask), overlay_path, overlay_format)
    print(f'wrote {args.out} and {overlay_path}' + ('' if trained else ' (random weights: the mask is meaningless)'))
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
