"""The one way an image file becomes pixels: as people's photos are displayed.

Every tool, the evaluation and the datasets read images with :func:`read_image`, so that the
coordinates of prompts, the masks, the overlays and the RLE all refer to the image as a viewer shows
it:

- EXIF orientation is applied (a phone photo stored sideways comes out upright);
- 16-bit images (grey ``I;16`` / ``I`` PNGs and TIFFs) are scaled to 8 bits (``v * 255 / 65535``,
  rounded), not clipped to white;
- grey, black-and-white, palette, CMYK and other modes are converted to RGB;
- alpha (RGBA, LA, palette transparency) is composited on WHITE, as a viewer shows a transparent
  image on a light page: a transparent pixel becomes white, a half-transparent one half its colour;
  the alpha channel itself is not given to the model;
- float images (PIL mode ``F``) are refused: their range is not defined.
"""
import os

import numpy as np
from PIL import Image, ImageOps

_SIXTEEN_BIT = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')


def read_image(path: str) -> np.ndarray:
    """The image file ``path`` as uint8 ``HxWx3`` RGB, upright (see the module's docstring); a
    FileNotFoundError or a ValueError naming the file for anything else."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image not found: {path}')
    try:
        with Image.open(path) as opened:
            return to_rgb(opened, path)
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f'cannot read image {path}: not an image file, or a damaged one ({err})') from err


def to_rgb(image: Image.Image, what: str = 'image') -> np.ndarray:
    """A PIL image (from a file or an upload) as uint8 ``HxWx3`` RGB, by the rules of :func:`read_image`."""
    image = ImageOps.exif_transpose(image)
    if image.mode == 'F':
        raise ValueError(f'{what}: 32-bit float images are not supported (their range is not defined); '
                         f'save it as an 8- or 16-bit image')
    if image.mode in _SIXTEEN_BIT:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f'{what}: 32-bit integer values beyond 16 bits; save it as an 8- or 16-bit image')
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if 'A' in image.getbands() or 'a' in image.getbands() or 'transparency' in image.info:
        rgba = np.asarray(image.convert('RGBA')).astype(np.uint32)
        alpha = rgba[..., 3:]
        return ((rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.asarray(image.convert('RGB'))
