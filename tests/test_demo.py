import os
import subprocess
import sys

from conftest import EFFICIENTSAM_TINY
from PIL import Image

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


def run_demo(*args, env=None):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'tools', 'demo.py'), *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_demo_without_weights_says_so_and_writes_overlay(tmp_path):
    output = tmp_path / 'overlay.png'
    result = run_demo('--output', str(output), env={'EFFICIENTSAM_OFFLINE': '1',
                                                    'EFFICIENTSAM_HOME': str(tmp_path / 'cache')})
    assert result.returncode == 0, result.stderr
    assert 'RANDOM weights' in result.stderr and 'meaningless' in result.stdout
    with Image.open(output) as image:
        assert image.size == (2 * 640, 427)


def test_demo_squeezesam_without_weights_says_so(tmp_path):
    output = tmp_path / 'overlay.png'
    result = run_demo('--model', 'squeezesam', '--output', str(output),
                      env={'EFFICIENTSAM_OFFLINE': '1', 'EFFICIENTSAM_HOME': str(tmp_path / 'cache')})
    assert result.returncode == 0, result.stderr
    assert 'never published' in result.stderr and 'RANDOM weights' in result.stderr
    assert '--checkpoint squeeze_sam.pt' in result.stderr and 'meaningless' in result.stdout
    with Image.open(output) as image:
        assert image.size == (2 * 640, 427)


def test_demo_with_checkpoint_and_custom_prompts(tmp_path, official_vitt_checkpoint):
    output = tmp_path / 'dogs.png'
    result = run_demo('--image', os.path.join(EFFICIENTSAM_TINY, 'dogs.png'), '--checkpoint', official_vitt_checkpoint,
                      '--box', '400', '200', '800', '600', '--output', str(output))
    assert result.returncode == 0, result.stderr
    assert 'RANDOM' not in result.stderr and output.is_file()


def test_demo_needs_prompts_for_own_image(tmp_path):
    image = tmp_path / 'image.png'
    Image.new('RGB', (32, 32)).save(image)
    result = run_demo('--image', str(image), '--random-weights')
    assert result.returncode != 0 and 'give --box and/or --point' in result.stderr
