"""One-tap cut-out: the salient-click rule, the weight-free saliency and ``tools/auto_cutout.py``."""
import os
import subprocess
import sys
from collections import deque

import numpy as np
import pytest
import torch
from conftest import EFFICIENTSAM_TINY, REPO_ROOT
from PIL import Image

from efficientsam_plugins.cli import run_tool
from efficientsam_plugins.cutout import (
    connected_components,
    most_salient_blob,
    resize_saliency,
    salient_blob_and_clicks,
    salient_clicks,
    spectral_residual_saliency,
)

sys.path.insert(0, os.path.join(REPO_ROOT, 'tools'))
import auto_cutout  # noqa: E402

DOGS = os.path.join(EFFICIENTSAM_TINY, 'dogs.png')


def disc(h, w, cx, cy, r):
    rows, cols = np.indices((h, w))
    return (cols - cx) ** 2 + (rows - cy) ** 2 <= r ** 2


def on(blob, clicks):
    """Whether every click is (exactly) a pixel of ``blob``."""
    assert np.array_equal(clicks, np.round(clicks))
    return bool(blob[clicks[:, 1].astype(int), clicks[:, 0].astype(int)].all())


def flood_fill_partition(mask):
    """The 8-connected components as a set of frozensets of flat indices (a plain BFS reference)."""
    h, w = mask.shape
    seen, parts = np.zeros_like(mask), set()
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start], queue, part = True, deque([start]), set()
        while queue:
            r, c = queue.popleft()
            part.add(r * w + c)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    nr, nc = r + dr, c + dc
                    if 0 <= nr < h and 0 <= nc < w and mask[nr, nc] and not seen[nr, nc]:
                        seen[nr, nc] = True
                        queue.append((nr, nc))
        parts.add(frozenset(part))
    return parts


def test_connected_components_match_flood_fill():
    rng = np.random.default_rng(0)
    for density in (0.2, 0.45, 0.6, 0.9):
        mask = rng.random((23, 31)) < density
        labels = connected_components(torch.from_numpy(mask)).numpy().reshape(-1)
        parts = {frozenset(np.nonzero(labels == label)[0].tolist()) for label in np.unique(labels[labels > 0])}
        assert parts == flood_fill_partition(mask)
        assert (labels[~mask.reshape(-1)] == 0).all()
        assert all(labels[min(part)] == min(part) + 1 for part in parts)  # 1 + first flat index


def test_connected_components_of_a_long_snake_is_fast_and_one():
    mask = np.zeros((257, 256), bool)  # a one-pixel path of about 33k pixels winding through the map
    mask[::2] = True
    mask[1::4, -1] = True
    mask[3::4, 0] = True
    labels = connected_components(torch.from_numpy(mask))
    assert set(labels.unique().tolist()) == {0, 1}


def test_five_clicks_on_a_disc_one_per_quadrant():
    blob = disc(64, 80, 40, 30, 15)
    clicks = salient_clicks(blob.astype(np.float32) * 0.9)
    assert clicks.shape == (5, 2) and clicks.dtype == np.float32 and on(blob, clicks)
    assert np.abs(clicks[0] - (40, 30)).max() <= 1  # the whole blob's centre comes first
    offsets = clicks[1:] - clicks[0]
    assert len({(bool(dx > 0), bool(dy > 0)) for dx, dy in offsets}) == 4
    assert (np.hypot(*offsets.T) > 5).all()


def test_sections_follow_a_tilted_object():
    rows, cols = np.indices((100, 100))
    u, v = ((cols - 50) + (rows - 50)) / np.sqrt(2), ((cols - 50) - (rows - 50)) / np.sqrt(2)
    blob = (u / 40) ** 2 + (v / 10) ** 2 <= 1  # an ellipse along the diagonal
    clicks = salient_clicks(blob)
    assert len(clicks) == 5 and on(blob, clicks)
    along = (clicks[1:] - clicks[0]) @ np.array([[1, 1], [1, -1]]) / np.sqrt(2)
    assert sorted(np.sign(along[:, 0])) == [-1, -1, 1, 1] and sorted(np.sign(along[:, 1])) == [-1, -1, 1, 1]
    assert (np.abs(along[:, 0]) > 10).all()  # quarters of the length, not of the image's axes


def test_centre_outside_the_blob_snaps_onto_it():
    ring = disc(90, 90, 45, 45, 30) & ~disc(90, 90, 45, 45, 22)
    crescent = disc(90, 90, 45, 45, 30) & ~disc(90, 90, 58, 45, 28)
    for blob in (ring, crescent):
        saliency = np.where(blob, 0.8, 0.1)
        blob_found, clicks = salient_blob_and_clicks(saliency)
        assert np.array_equal(blob_found, blob) and len(clicks) == 5 and on(blob, clicks)
    ring_clicks = salient_clicks(np.where(ring, 0.8, 0.1))
    assert 21 <= np.hypot(*(ring_clicks[0] - 45)) <= 31  # the centre's nearest ring pixel


def test_most_salient_blob_has_the_largest_summed_saliency():
    saliency = np.zeros((60, 120), np.float32)
    saliency[disc(60, 120, 10, 10, 3)] = 1.0  # brightest, but a speck
    saliency[disc(60, 120, 60, 30, 12)] = 0.6
    saliency[disc(60, 120, 100, 40, 10)] = 0.7
    blob = most_salient_blob(saliency).numpy()
    assert np.array_equal(blob, disc(60, 120, 60, 30, 12))
    assert on(blob, salient_clicks(saliency))
    saliency[disc(60, 120, 100, 40, 10)] = 1.0  # 317 x 1.0 beats 441 x 0.6
    assert np.array_equal(most_salient_blob(saliency).numpy(), disc(60, 120, 100, 40, 10))


def test_degenerate_blobs_give_fewer_clicks_on_the_blob():
    point = np.zeros((9, 9), bool)
    point[4, 6] = True
    np.testing.assert_array_equal(salient_clicks(point), [[6, 4]])
    line = np.zeros((9, 30), bool)
    line[3, 5:25] = True
    clicks = salient_clicks(line)
    assert len(clicks) == 3 and on(line, clicks)


def test_map_types_and_threshold():
    blob = disc(40, 40, 20, 20, 8)
    saliency = np.where(blob, 200, 30).astype(np.uint8)
    expected = salient_clicks(saliency.astype(np.float64) / 255)
    np.testing.assert_array_equal(salient_clicks(saliency), expected)
    np.testing.assert_array_equal(salient_clicks(torch.from_numpy(saliency)), expected)
    np.testing.assert_array_equal(salient_clicks((saliency.astype(np.uint16) * 257)), expected)
    assert salient_clicks(saliency, threshold=0.1).shape == (5, 2)  # everything is one blob
    np.testing.assert_allclose(salient_clicks(saliency, threshold=0.1)[0], (19.5, 19.5), atol=0.5)


@pytest.mark.parametrize('saliency, threshold, message', [
    (np.zeros((4, 4, 3)), 0.5, 'non-empty 2-D'),
    (np.zeros((0, 4)), 0.5, 'non-empty 2-D'),
    (np.full((4, 4), np.nan), 0.5, 'NaN'),
    (np.full((4, 4), 1.5), 0.5, 'must lie in [0, 1]'),
    (np.full((4, 4), 3, np.int32), 0.5, 'signed integer'),
    (np.full((4, 4), 0.2), 0.5, 'no pixel of the saliency map reaches the threshold 0.5'),
    (np.full((4, 4), 0.2), 0.0, 'threshold must be a number in (0, 1]'),
    (np.full((4, 4), 0.2), 1.5, 'threshold must be a number in (0, 1]'),
    ('map.png', 0.5, 'numpy array or a torch tensor'),
])
def test_bad_maps_are_refused(saliency, threshold, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')
                       .replace('[', r'\[').replace(']', r'\]')):
        salient_clicks(saliency, threshold)


def test_spectral_residual_finds_an_odd_patch():
    rng = np.random.default_rng(0)
    rows, cols = np.indices((120, 160))
    image = (128 + 60 * np.sin(cols / 2.0)[..., None] + rng.normal(0, 4, (120, 160, 3))).clip(0, 255)
    image[disc(120, 160, 110, 40, 10)] = (250, 30, 30)  # breaks the stripes
    saliency = spectral_residual_saliency(image.astype(np.uint8))
    assert saliency.shape == (120, 160) and saliency.dtype == np.float32
    assert saliency.min() == 0 and saliency.max() == 1
    clicks = salient_clicks(saliency)
    assert np.hypot(*(clicks[0] - (110, 40))) < 20
    assert (spectral_residual_saliency(np.full((20, 30, 3), 90, np.uint8)) == 0).all()


def test_resize_saliency_to_the_image():
    small = np.zeros((10, 20), np.uint8)
    small[3:7, 5:15] = 255
    resized = resize_saliency(small, (40, 80))
    assert resized.shape == (40, 80) and resized.max() == 1 and resized[20, 40] == 1 and resized[0, 0] == 0


# --- tools/auto_cutout.py ---

@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv('EFFICIENTSAM_OFFLINE', '1')
    monkeypatch.setenv('EFFICIENTSAM_HOME', str(tmp_path / 'cache'))


def check_outputs(cutout_path, overlay_path, size):
    with Image.open(cutout_path) as cutout:
        assert cutout.mode == 'RGBA' and cutout.size == size
        alpha = np.asarray(cutout)[..., 3]
    assert set(np.unique(alpha).tolist()) <= {0, 255}
    with Image.open(overlay_path) as overlay:
        assert overlay.size == (3 * size[0], size[1])


def test_tool_cuts_out_the_dogs_with_efficientsam(offline, tmp_path, capsys):
    out = tmp_path / 'dogs.png'
    assert auto_cutout.main([DOGS, '--out', str(out)]) == 0
    captured = capsys.readouterr()
    assert 'RANDOM weights' in captured.err and 'meaningless' in captured.out
    assert 'spectral residual' in captured.out and '5 clicks' in captured.out and 'cut-out runtime' in captured.out
    check_outputs(out, tmp_path / 'dogs_overlay.png', (1072, 603))


def test_tool_takes_a_saliency_png_with_squeezesam(offline, tmp_path, capsys):
    image = np.full((96, 128, 3), 120, np.uint8)
    Image.fromarray(image).save(tmp_path / 'image.png')
    saliency = np.zeros((48, 64), np.uint8)  # another model's map, at half the resolution
    saliency[disc(48, 64, 40, 20, 8)] = 230
    Image.fromarray(saliency).save(tmp_path / 'saliency.png')
    out, overlay = tmp_path / 'cut.png', tmp_path / 'panels.jpg'
    assert auto_cutout.main([str(tmp_path / 'image.png'), '--model', 'squeezesam', '--saliency',
                             str(tmp_path / 'saliency.png'), '--out', str(out), '--overlay', str(overlay)]) == 0
    captured = capsys.readouterr()
    assert 'never published' in captured.err and 'RANDOM weights' in captured.err
    assert '--checkpoint squeeze_sam.pt' in captured.err
    check_outputs(out, overlay, (128, 96))
    clicks = [tuple(map(float, click.strip('()').split(', ')))
              for click in captured.out.split('clicks in ')[1].split('s: ')[1].splitlines()[0].split(') (')]
    assert len(clicks) == 5 and all(np.hypot(x - 80, y - 40) <= 18 for x, y in clicks)


def write_inputs(tmp):
    Image.new('RGB', (64, 48), (90, 90, 90)).save(tmp / 'flat.png')
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp / 'noise.png')
    (tmp / 'not_an_image.png').write_text('hello')
    (tmp / 'not_an_array.npy').write_text('hello')
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp / 'square_map.png')
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(tmp / 'dark_map.png')
    np.save(tmp / 'rgb_map.npy', np.zeros((48, 64, 3), np.float32))
    np.save(tmp / 'bright_map.npy', np.full((48, 64), 7.0, np.float32))
    (tmp / 'garbage.pt').write_bytes(b'not a checkpoint')
    (tmp / 'folder.png').mkdir()


BAD_INPUTS = [
    (['{tmp}/missing.png'], 'image not found'),
    (['{tmp}/not_an_image.png'], 'cannot read image'),
    (['{tmp}/noise.png', '--out', '{tmp}/cut.jpg'], 'must be a .png file'),
    (['{tmp}/noise.png', '--out', '{tmp}/folder.png'], 'is a folder'),
    (['{tmp}/noise.png', '--out', '{tmp}/missing/cut.png'], 'output folder does not exist'),
    (['{tmp}/noise.png', '--overlay', '{tmp}/panels.xyz'], 'unknown image extension'),
    (['{tmp}/noise.png', '--overlay', '{tmp}/cut.png'], 'same file'),
    (['{tmp}/noise.png', '--saliency', '{tmp}/missing.png'], 'saliency map not found'),
    (['{tmp}/noise.png', '--saliency', '{tmp}/not_an_image.png'], 'cannot read --saliency'),
    (['{tmp}/noise.png', '--saliency', '{tmp}/not_an_array.npy'], 'not a numpy .npy array'),
    (['{tmp}/noise.png', '--saliency', '{tmp}/square_map.png'], 'another aspect ratio'),
    (['{tmp}/noise.png', '--saliency', '{tmp}/rgb_map.npy'], 'non-empty 2-D'),
    (['{tmp}/noise.png', '--saliency', '{tmp}/bright_map.npy'], 'must lie in [0, 1]'),
    (['{tmp}/noise.png', '--saliency', '{tmp}/dark_map.png'], 'no pixel of the saliency map reaches'),
    (['{tmp}/flat.png'], 'no pixel of the saliency map reaches'),  # a flat image has no salient spot
    (['{tmp}/noise.png', '--checkpoint', '{tmp}/garbage.pt'], 'cannot read checkpoint'),
]


@pytest.mark.parametrize('args, keyword', BAD_INPUTS, ids=[keyword for _, keyword in BAD_INPUTS])
def test_tool_refuses_bad_input_with_one_error_line(args, keyword, offline, tmp_path, capsys):
    write_inputs(tmp_path)
    argv = [arg.replace('{tmp}', str(tmp_path)) for arg in args]
    argv += [] if '--out' in argv else ['--out', str(tmp_path / 'cut.png')]
    assert run_tool(auto_cutout.main, argv) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith('error: ') and keyword in last
    assert not (tmp_path / 'cut.png').exists()


@pytest.mark.parametrize('args, keyword', [
    (['--threshold', '0'], 'must be in (0, 1]'),
    (['--threshold', 'half'], 'is not a number'),
    (['--model', 'sam_h'], "unknown model 'sam_h'"),
])
def test_tool_refuses_bad_options_with_usage(args, keyword, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        auto_cutout.main([DOGS, '--out', str(tmp_path / 'cut.png'), *args])
    assert exit_info.value.code == 2 and keyword in capsys.readouterr().err


def test_tool_command_line_error_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'tools', 'auto_cutout.py'), DOGS,
                             '--saliency', str(tmp_path / 'missing.png'), '--out', str(tmp_path / 'cut.png')],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith('error: --saliency map not found')
