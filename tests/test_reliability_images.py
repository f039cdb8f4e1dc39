"""Images as people's photos are: EXIF-rotated, 16-bit grey, palette and RGBA files read as displayed
(efficientsam_plugins.image_io.read_image), through the demo and the segment-everything tool, whose
outputs must equal those of the same photo converted by hand into a plain upright RGB file."""
import importlib.util
import json
import os

import numpy as np
import pytest
from conftest import COCO_MINI, EFFICIENTSAM_TINY, REPO_ROOT
from PIL import Image

from efficientsam_plugins.image_io import read_image

PHOTO = os.path.join(COCO_MINI, 'val2017', '000000002149.jpg')
ORIENTATION = 0x0112
# What a viewer does with the stored pixels for each EXIF orientation, written by hand in numpy.
UPRIGHT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
           8: lambda a: np.rot90(a, 1)}


@pytest.fixture(scope='module')
def photo():
    """A 200x120 crop of a bundled COCO photo (not square, so that a rotation shows)."""
    with Image.open(PHOTO) as opened:
        return np.asarray(opened.convert('RGB'))[100:220, 150:350].copy()


def save_rotated(pixels: np.ndarray, path, orientation: int) -> None:
    """``pixels`` stored as they are, with an EXIF orientation tag (PNG: lossless)."""
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[ORIENTATION] = orientation
    image.save(path, exif=exif.tobytes())


def variants(photo: np.ndarray, folder) -> dict:
    """kind: (path of the photo as a camera or an editor writes it, the upright RGB pixels by hand)."""
    out = {}
    stored = np.rot90(photo, 1).copy()  # a phone held sideways: shown upright with orientation 6
    save_rotated(stored, folder / 'exif6.png', 6)
    out['exif'] = (folder / 'exif6.png', UPRIGHT[6](stored))
    grey = np.asarray(Image.fromarray(photo).convert('L'))
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / 'grey16.png')  # 16-bit: 0..65535
    out['grey16'] = (folder / 'grey16.png', np.repeat(grey[..., None], 3, axis=2))
    palette = Image.fromarray(photo).quantize(64)
    palette.save(folder / 'palette.png')
    out['palette'] = (folder / 'palette.png', np.asarray(palette.convert('RGB')))
    alpha = np.tile(np.linspace(0, 255, photo.shape[1]).round().astype(np.uint8), (photo.shape[0], 1))
    Image.fromarray(np.dstack([photo, alpha])).save(folder / 'rgba.png')
    a = alpha[..., None] / 255.0
    out['rgba'] = (folder / 'rgba.png', np.round(photo * a + 255 * (1 - a)).astype(np.uint8))  # on white
    return out


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_is_applied(tmp_path, photo, orientation):
    save_rotated(photo, tmp_path / 'photo.png', orientation)
    np.testing.assert_array_equal(read_image(str(tmp_path / 'photo.png')), UPRIGHT[orientation](photo))


def test_jpeg_from_a_phone_comes_out_upright(tmp_path, photo):
    image = Image.fromarray(np.rot90(photo, 1).copy())
    exif = image.getexif()
    exif[ORIENTATION] = 6
    image.save(tmp_path / 'phone.jpg', exif=exif.tobytes(), quality=95)
    upright = read_image(str(tmp_path / 'phone.jpg'))
    assert upright.shape == photo.shape and np.abs(upright.astype(int) - photo).mean() < 3


def test_grey16_palette_and_alpha(tmp_path, photo):
    for kind, (path, expected) in variants(photo, tmp_path).items():
        image = read_image(str(path))
        assert image.dtype == np.uint8 and image.shape == expected.shape, kind
        np.testing.assert_array_equal(image, expected, err_msg=kind)


def test_unreadable_images_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='image not found: .*missing.png'):
        read_image(str(tmp_path / 'missing.png'))
    (tmp_path / 'text.png').write_text('not an image')
    with pytest.raises(ValueError, match='cannot read image .*text.png'):
        read_image(str(tmp_path / 'text.png'))
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / 'float.tiff')
    with pytest.raises(ValueError, match='float.tiff: 32-bit float images are not supported'):
        read_image(str(tmp_path / 'float.tiff'))


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    """The tiny reference model (config .json and seeded weights), as the tools' --model/--checkpoint take it."""
    with open(os.path.join(EFFICIENTSAM_TINY, 'reference.json')) as f:
        config = json.load(f)['config']
    path = tmp_path_factory.mktemp('tiny') / 'config.json'
    path.write_text(json.dumps(config))
    return ['--model', str(path), '--checkpoint', os.path.join(EFFICIENTSAM_TINY, 'state_dict.pt')]


@pytest.fixture(scope='module')
def photos(tmp_path_factory, photo):
    """kind: (the photo as written by a camera or an editor, the same photo as an upright RGB file by hand)."""
    folder = tmp_path_factory.mktemp('photos')
    out = {}
    for kind, (path, upright) in variants(photo, folder).items():
        Image.fromarray(upright).save(folder / f'{kind}_by_hand.png')
        out[kind] = (path, folder / f'{kind}_by_hand.png')
    return out


KINDS = ('exif', 'grey16', 'palette', 'rgba')


@pytest.mark.parametrize('kind', KINDS)
def test_demo_sees_photos_as_displayed(tmp_path, photos, tiny_model, kind):
    demo = load_tool('demo')
    prompts = ['--box', '20', '10', '180', '110', '--point', '150', '60']  # on the upright 200x120 photo

    def overlay(path, name):
        out = tmp_path / f'{name}.png'
        assert demo.main(['--image', str(path), *tiny_model, *prompts, '--output', str(out)]) == 0
        with Image.open(out) as written:
            return np.asarray(written)

    path, by_hand = photos[kind]
    np.testing.assert_array_equal(overlay(path, 'photo'), overlay(by_hand, 'by_hand'))


@pytest.mark.parametrize('kind', KINDS)
def test_segment_everything_sees_photos_as_displayed(tmp_path, photos, tiny_model, kind):
    tool = load_tool('segment_everything')
    options = [*tiny_model, '--points-per-side', '3', '--pred-iou-thresh', '0', '--stability-score-offset', '0.1',
               '--stability-score-thresh', '0.5']

    def records(path, name):
        out = tmp_path / f'{name}.json'
        assert tool.main([str(path), *options, '--out', str(out)]) == 0
        return json.loads(out.read_text())

    path, by_hand = photos[kind]
    expected = records(by_hand, 'by_hand')
    assert expected and expected[0]['segmentation']['size'] == [120, 200]
    assert records(path, 'photo') == expected
