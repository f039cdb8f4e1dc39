"""Installs efficientsam_plugins; the pinned stack lives in requirements.txt (see README)."""
from pathlib import Path

from setuptools import find_packages, setup


def pinned(*names):
    """Return the requirements.txt pins of the given distributions, so extras never drift from it."""
    pins = {}
    for line in Path(__file__).with_name('requirements.txt').read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            name = line.replace('<', '=').replace('>', '=').split('=', 1)[0].strip().lower()
            pins[name] = line
    return [pins[name] for name in names]


setup(
    name='efficientsam_plugins',
    version='0.1.0',
    description='EfficientSAM and SAMI pretraining for OpenMMLab and detectron2',
    long_description=Path(__file__).with_name('README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['efficientsam_plugins', 'efficientsam_plugins.*']),
    install_requires=['torch>=2.1', 'torchvision', 'numpy', 'pillow', 'tqdm', 'safetensors', 'filelock'],
    extras_require={
        'mm': pinned('mmcv', 'mmengine', 'mmdet', 'mmsegmentation', 'mmpretrain', 'pycocotools', 'lvis',
                     'segment-anything', 'ftfy', 'regex'),
        # detectron2 is not on PyPI: install it from its git repository (README, "detectron2").
        'detectron2': ['fvcore', 'pycocotools'],
        'export': pinned('onnx', 'onnxruntime', 'ml_dtypes'),
        'int8': pinned('torchao'),  # SqueezeSAM's PT2E int8 path
        # the clients tests/test_clients.py runs (plus samexporter and anylabeling with --no-deps)
        'clients': pinned('onnx', 'onnxruntime', 'opencv-python', 'osam', 'supervision'),
        'app': pinned('gradio'),  # tools/web_demo.py
        'dev': pinned('pytest', 'ruff', 'playwright', 'mkdocs',
                      'mkdocs-material', 'mkdocstrings', 'mkdocstrings-python'),
    },
)
