"""Segment an image with a box and a point prompt and write a PNG overlay.

    python tools/demo.py                                   # bundled image, default prompts
    python tools/demo.py --checkpoint efficient_sam_vitt.pt
    python tools/demo.py --image my.jpg --box 10 20 200 300 --point 100 150 --output out.png
    python tools/demo.py --model squeezesam --checkpoint squeeze_sam.pt

Without ``--checkpoint`` the demo fetches the released weights from the model zoo (verified, cached
in ``$EFFICIENTSAM_HOME``). Where that is impossible (no network, ``EFFICIENTSAM_OFFLINE=1``; always
for SqueezeSAM, whose weights were never published, unless a user manifest adds them) or with
``--random-weights`` it runs end to end on random weights and says plainly that the masks are
meaningless.
"""
import argparse
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.cli import (  # noqa: E402
    add_model_arguments,
    load_predictor,
    run_tool,  # noqa: E402
)
from efficientsam_plugins.image_io import read_image  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
DEFAULT_IMAGE = os.path.join(REPO, 'data', 'coco_mini', 'val2017', '000000002149.jpg')
DEFAULT_BOX = (96.0, 94.0, 340.0, 326.0)  # the apple of the bundled image (COCO annotation)
DEFAULT_POINT = (218.0, 210.0)
COLORS = {'box': (30, 144, 255), 'point': (255, 64, 64)}


def check_output(path: str) -> None:
    """Rejects, before any work, an output the demo could not write."""
    if os.path.isdir(path):
        raise IsADirectoryError(f'--output {path} is a folder; give a file name such as overlay.png')
    extension = os.path.splitext(path)[1].lower()
    if extension not in Image.registered_extensions():
        raise ValueError(f'--output {path}: unknown image extension {extension or "(none)"!r}; use .png or .jpg')
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # the folders the demo would create
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(f'--output {path}: {folder} is a file, not a folder')
    if not os.access(folder, os.W_OK):
        raise PermissionError(f'--output {path}: folder {folder} is not writable')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--image', default=DEFAULT_IMAGE, help='RGB image (default: bundled COCO image)')
    add_model_arguments(parser)
    parser.add_argument('--box', type=float, nargs=4, metavar=('X1', 'Y1', 'X2', 'Y2'))
    parser.add_argument('--point', type=float, nargs=2, metavar=('X', 'Y'))
    parser.add_argument('--output', default=os.path.join('outputs', 'demo_overlay.png'))
    args = parser.parse_args(argv)
    if not os.path.isfile(args.image):
        raise FileNotFoundError(f'image not found: {args.image}')
    check_output(args.output)
    image = read_image(args.image)  # upright (EXIF), 8-bit RGB, alpha composited on white
    default_image = os.path.abspath(args.image) == os.path.abspath(DEFAULT_IMAGE)
    box = args.box or (DEFAULT_BOX if default_image else None)
    point = args.point or (DEFAULT_POINT if default_image else None)
    if box is None and point is None:
        raise ValueError('give --box and/or --point for your own image')
    predictor, trained = load_predictor(args)
    start = time.perf_counter()
    predictor.set_image(image)
    done = 'resized (SqueezeSAM runs per prompt)' if predictor.model_name.startswith('SqueezeSAM') else 'embedded'
    print(f'image {image.shape[1]}x{image.shape[0]} {done} in {time.perf_counter() - start:.2f}s')
    panels = []
    prompts = [('box', dict(boxes=[box]))] if box else []
    prompts += [('point', dict(points=[point]))] if point else []
    for kind, prompt in prompts:
        masks, scores, _ = predictor.predict(**prompt)
        best = int(scores[0].argmax())
        print(f'{kind} prompt: best of {masks.shape[1]} masks has predicted IoU {scores[0, best]:.3f}, '
              f'{int(masks[0, best].sum())} pixels')
        pixels, mask = image.astype(np.float32), masks[0, best]
        pixels[mask] = 0.5 * pixels[mask] + 0.5 * np.asarray(COLORS[kind], np.float32)
        panel = Image.fromarray(pixels.astype(np.uint8))
        draw = ImageDraw.Draw(panel)
        if kind == 'box':
            draw.rectangle(box, outline=COLORS[kind], width=3)
        else:
            x, y = point
            draw.ellipse((x - 6, y - 6, x + 6, y + 6), fill=COLORS[kind], outline=(255, 255, 255))
        panels.append(panel)

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    Image.fromarray(np.concatenate([np.asarray(panel) for panel in panels], axis=1)).save(args.output)
    print(f'wrote {args.output}' + ('' if trained else ' (random weights: masks are meaningless)'))
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
