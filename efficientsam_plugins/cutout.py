"""One-tap cut-out: five clicks on the most salient object of a saliency map (SqueezeSAM's rule).

SqueezeSAM's blog turns a salient-object map into clicks: threshold the map, detect blobs, take
the most salient one, split it into four sections and click the centre of mass of each section
and of the whole blob. Where the blog is silent this module decides:

* blobs are the 8-connected components of ``saliency >= threshold``; the most salient one has the
  largest summed saliency (so one strong, large object beats a speck at 1.0 and a wide haze);
* the four sections are the quadrants about the blob's centre of mass cut along its principal
  axes (the saliency-weighted covariance), so a tilted or elongated object is split along its own
  length and width rather than the image's;
* centres of mass are saliency-weighted, and each click is the pixel of its section (of the blob,
  for the whole-blob click) nearest its centre of mass: that pixel itself on a convex part, the
  closest pixel of the part where the centre falls outside it (a ring, a C, a crescent). Clicks
  are therefore integer pixels ``(column, row)`` that always lie on the blob;
* a section without pixels (a one-pixel blob; a straight line has two) gives no click, nor does
  one whose click repeats an earlier click (a blob of a few pixels), so K <= 5.

:func:`spectral_residual_saliency` is a saliency source that needs no weights (Hou & Zhang, CVPR
2007); any salient-object model's map can be passed to :func:`salient_clicks` instead.
"""
import numbers
from typing import Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .predictor import image_to_tensor

MapLike = Union[np.ndarray, torch.Tensor]

SPECTRAL_RESIDUAL_SIZE = 64  # Hou & Zhang work on a 64-pixel image: saliency is a coarse cue
SPECTRAL_RESIDUAL_SIGMA = 2.5  # blur of the squared map, in pixels of that 64-pixel image


def saliency_to_tensor(saliency: MapLike) -> torch.Tensor:
    """A 2-D map as float ``[H, W]`` in [0, 1]: floats as they are (they must lie in [0, 1]),
    booleans as 0/1, unsigned integers divided by their type's maximum (a uint8 PNG by 255)."""
    if isinstance(saliency, np.ndarray):
        if saliency.dtype.kind not in 'buif':
            raise ValueError(f'saliency must hold numbers, got dtype {saliency.dtype}')
        saliency = torch.from_numpy(np.ascontiguousarray(saliency, dtype=np.float64) / _integer_scale(saliency.dtype))
    elif isinstance(saliency, torch.Tensor):
        if saliency.dtype == torch.bool:
            saliency = saliency.double()
        elif saliency.dtype == torch.uint8:
            saliency = saliency.double() / 255
        elif not saliency.is_floating_point():
            raise ValueError(f'saliency tensors must be float in [0, 1], uint8 or bool, got {saliency.dtype}')
    else:
        raise ValueError(f'saliency must be a numpy array or a torch tensor, got {type(saliency).__name__}')
    if saliency.ndim != 2 or 0 in saliency.shape:
        raise ValueError(f'saliency must be a non-empty 2-D [H, W] map, got shape {tuple(saliency.shape)}')
    saliency = saliency.detach().cpu().float()
    if not torch.isfinite(saliency).all():
        raise ValueError('saliency contains NaN or infinite values')
    if saliency.min() < 0 or saliency.max() > 1:
        raise ValueError(f'float saliency must lie in [0, 1], got values in [{float(saliency.min()):.3g}, '
                         f'{float(saliency.max()):.3g}]; scale the map first')
    return saliency


def _integer_scale(dtype: np.dtype) -> float:
    if dtype.kind == 'u':
        return float(np.iinfo(dtype).max)
    if dtype.kind == 'i':
        raise ValueError(f'signed integer saliency ({dtype}) is ambiguous: pass floats in [0, 1] or uint8')
    return 1.0


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """8-connected components of a bool ``[H, W]`` mask (OpenCV's ``connectedComponents``):
    int64 labels, 0 off the mask and ``1 + the smallest flat index`` of the component on it."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError('the cut-out needs OpenCV: pip install opencv-python') from err
    count, labels = cv2.connectedComponents(mask.numpy().astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    found, first = np.unique(labels.reshape(-1), return_index=True)  # each label's first pixel
    renumber = np.zeros(count, np.int64)
    renumber[found] = first + 1
    renumber[0] = 0  # the background
    return torch.from_numpy(renumber[labels])


def most_salient_blob(saliency: MapLike, threshold: float = 0.5) -> torch.Tensor:
    """Bool ``[H, W]``: the 8-connected component of ``saliency >= threshold`` with the largest
    summed saliency (ties: the one whose first pixel comes first in row-major order)."""
    return _most_salient_blob(saliency_to_tensor(saliency), threshold)


def _most_salient_blob(saliency: torch.Tensor, threshold: float) -> torch.Tensor:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold <= 1:
        raise ValueError(f'threshold must be a number in (0, 1], got {threshold!r}')
    above = saliency >= threshold
    if not above.any():
        raise ValueError(f'no pixel of the saliency map reaches the threshold {threshold} (its maximum is '
                         f'{float(saliency.max()):.3f}): lower the threshold or use another map')
    rows, cols = torch.nonzero(above.any(1)).squeeze(1), torch.nonzero(above.any(0)).squeeze(1)
    window = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    labels = connected_components(above[window])  # only the part of the map above the threshold
    totals = torch.zeros(labels.numel() + 1, dtype=torch.float64).index_add_(
        0, labels.view(-1), saliency[window].reshape(-1).double())
    totals[0] = -1  # the background is never the blob
    blob = torch.zeros_like(above)
    blob[window] = labels == int(totals.argmax())
    return blob


def _centre_pixel(points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The point of ``points`` ``[N, 2]`` nearest their ``weights``-weighted centre of mass."""
    centre = (points * weights[:, None]).sum(0) / weights.sum()
    return points[((points - centre) ** 2).sum(1).argmin()]


def _blob_clicks(blob: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
    """Float ``[K, 2]`` (x, y) clicks on the pixels of bool ``blob`` ``[H, W]``: first the whole
    blob's, then one per non-empty section (see the module's docstring)."""
    rows, cols = torch.nonzero(blob, as_tuple=True)
    points = torch.stack([cols, rows], 1).double()
    weights = saliency[rows, cols].double()  # > 0: the blob lies at or above a positive threshold
    centre = (points * weights[:, None]).sum(0) / weights.sum()
    offsets = points - centre
    covariance = (offsets.T * weights) @ offsets / weights.sum()
    axes = torch.linalg.eigh(covariance).eigenvectors.flip(1)  # columns: major axis, minor axis
    axes = axes * torch.where(axes[0] < 0, -1.0, 1.0).double()  # a fixed sign: x component >= 0
    along = offsets @ axes
    section = (along[:, 0] >= 0).long() * 2 + (along[:, 1] >= 0).long()
    clicks = [_centre_pixel(points, weights)]
    for index in range(4):
        inside = section == index
        if inside.any():
            click = _centre_pixel(points[inside], weights[inside])
            if not any(torch.equal(click, earlier) for earlier in clicks):
                clicks.append(click)
    return torch.stack(clicks).float()


def salient_blob_and_clicks(saliency: MapLike, threshold: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """(bool ``[H, W]`` most salient blob, float32 ``[K, 2]`` clicks): :func:`salient_clicks`
    with the blob it clicked on, for drawing."""
    saliency_map = saliency_to_tensor(saliency)
    blob = _most_salient_blob(saliency_map, threshold)
    return blob.numpy(), _blob_clicks(blob, saliency_map).numpy()


def salient_clicks(saliency: MapLike, threshold: float = 0.5) -> np.ndarray:
    """Float32 ``[K, 2]`` (x, y) clicks, K <= 5 (fewer only for a line or a blob of a few pixels), on the
    most salient blob of ``saliency`` (``[H, W]``: floats in [0, 1], bool, or uint8/uint16 scaled by
    their maximum): the whole blob's centre of mass, then each of its four sections'. Clicks are
    pixels of the map, always on the blob; the module's docstring gives the rule."""
    return salient_blob_and_clicks(saliency, threshold)[1]


def _gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """``[1, 1, H, W]`` blurred by a separable Gaussian, reflecting at the borders."""
    radius = max(1, int(round(3 * sigma)))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=maps.dtype) / sigma) ** 2)
    taps = taps / taps.sum()
    h, w = maps.shape[-2:]
    maps = F.conv2d(F.pad(maps, (radius, radius, 0, 0), mode='reflect' if w > radius else 'replicate'),
                    taps.view(1, 1, 1, -1))
    return F.conv2d(F.pad(maps, (0, 0, radius, radius), mode='reflect' if h > radius else 'replicate'),
                    taps.view(1, 1, -1, 1))


def spectral_residual_saliency(image, size: int = SPECTRAL_RESIDUAL_SIZE,
                               sigma: float = SPECTRAL_RESIDUAL_SIGMA) -> np.ndarray:
    """Float32 ``[H, W]`` saliency in [0, 1] of an RGB image (anything :func:`image_to_tensor`
    takes), without any learned weights: Hou & Zhang's spectral residual.

    The grey image, resized to ``size`` x ``size``, is Fourier transformed; the log-amplitude
    spectrum minus its 3x3 local average (what the image has beyond the smooth 1/f spectrum of
    natural images) is transformed back with the original phase, squared, blurred by a Gaussian of
    ``sigma`` pixels, min-max scaled and resized to the image. A coarse cue: it finds conspicuous
    regions, not object outlines. A flat image (grey levels within one step of 255) is all zeros."""
    if type(size) is not int or size < 4:
        raise ValueError(f'size must be an int >= 4, got {size!r}')
    if not sigma > 0:
        raise ValueError(f'sigma must be positive, got {sigma!r}')
    rgb = image_to_tensor(image)
    if 0 in rgb.shape:
        raise ValueError(f'image is empty: shape {tuple(rgb.shape)}')
    h, w = rgb.shape[1:]
    grey = (rgb * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True)
    small = F.interpolate(grey[None], (size, size), mode='area')[0, 0].double()
    if small.max() - small.min() < 1 / 255:  # only rounding noise beside the mean: nothing stands out
        return np.zeros((h, w), np.float32)
    spectrum = torch.fft.fft2(small)
    log_amplitude = torch.log(spectrum.abs().clamp_min(1e-12))
    # The spectrum is periodic, so its local average wraps around.
    local_average = F.avg_pool2d(F.pad(log_amplitude[None, None], (1, 1, 1, 1), mode='circular'), 3, stride=1)
    residual = log_amplitude - local_average[0, 0]
    saliency = torch.fft.ifft2(torch.exp(torch.complex(residual, torch.angle(spectrum)))).abs() ** 2
    saliency = _gaussian_blur(saliency[None, None], sigma)
    saliency = F.interpolate(saliency, (h, w), mode='bilinear', align_corners=False)[0, 0]
    low, high = saliency.min(), saliency.max()
    scaled = (saliency - low) / (high - low) if high > low else torch.zeros_like(saliency)
    return scaled.float().numpy()


def resize_saliency(saliency: MapLike, size: Tuple[int, int]) -> np.ndarray:
    """A map (as :func:`saliency_to_tensor` reads it) bilinearly resized to ``size`` (H, W), so a
    salient-object model's map at its own resolution gives clicks in the image's pixels."""
    saliency_map = saliency_to_tensor(saliency)
    if tuple(saliency_map.shape) == tuple(size):
        return saliency_map.numpy()
    resized = F.interpolate(saliency_map[None, None], size, mode='bilinear', align_corners=False)[0, 0]
    return resized.clamp(0, 1).numpy()
