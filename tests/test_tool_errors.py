"""Every command-line tool ends a user's mistake with one ``error: ...`` line and a non-zero exit.

Each case runs a tool as a user would (a fresh interpreter, the repository as working directory)
with one bad input and checks there is no traceback and that the last line of stderr names the
problem. Every case fails before any real work, so most of its time is the interpreter importing
torch (and mmengine); the cases therefore run a few at a time, and variants of the same mistakes
(``MORE_CASES``) go through the tools' ``main`` in this process, with the same checks.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Tuple

import pytest
import torch
from PIL import Image

from efficientsam_plugins.cli import run_tool

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
COCO_ANN = 'data/coco_mini/annotations/instances_val2017.json'
COCO_IMAGES = 'data/coco_mini/val2017'
USAGE_LINE = re.compile(r'^[\w.-]+: error: ')  # argparse's own errors: "prog: error: ..."


@dataclass(frozen=True)
class Case:
    """One bad input: ``args`` may name the prepared inputs as ``{tmp}/...``."""
    tool: str
    args: Tuple[str, ...]
    keyword: str  # the last stderr line must contain it (case-insensitive)
    usage: bool = False  # an argparse usage error ("prog: error: ...", exit 2)
    needs: Optional[str] = None  # a module the tool needs to get as far as the mistake


def case(tool, *args, keyword, usage=False, needs=None):
    shown = (arg if len(arg) <= 40 else arg[:12] + '...' for arg in args)
    label = f'{tool}:{" ".join(shown)}'.replace('{tmp}/', '')
    return pytest.param(Case(tool, args, keyword, usage, needs), id=label)


TINY_CONFIG = json.dumps(dict(img_size=256, embed_dim=32, depth=2, num_heads=2, neck_dims=[32, 32],
                              dec_depth=2, dec_heads=2, dec_mlp_dim=64, upscaling=[16, 8],
                              iou_head_hidden_dim=32))
EVAL_DATA = ('--ann-file', COCO_ANN, '--img-dir', COCO_IMAGES)

CASES = [  # run as a user would: a fresh interpreter per case; demo.py's default image is 640x427
    case('demo.py', '--image', '{tmp}/not_an_image.jpg', keyword='cannot read image'),
    case('demo.py', '--image', '{tmp}/missing.jpg', keyword='image not found'),
    case('demo.py', '--box', '0', '0', '5000', '5000', keyword='outside the 640x427 image'),
    case('demo.py', '--output', '{tmp}/overlay.xyz', keyword='extension'),
    case('demo.py', '--checkpoint', '{tmp}/garbage.pt', keyword='cannot read checkpoint'),
    case('demo.py', '--device', 'nowhere', keyword='not a torch device', usage=True),

    case('train.py', '{tmp}/missing.py', keyword='config file not found', needs='mmengine'),
    case('train.py', '{tmp}/syntax_error.py', keyword='cannot read config', needs='mmengine'),
    case('train.py', '{tmp}/unknown_type.py', keyword='NoSuchModel', needs='mmengine'),
    case('train.py', '{tmp}/unknown_type.py', '--cfg-options', 'lr', keyword='key=value', usage=True,
         needs='mmengine'),
    case('train.py', '--framework', 'detectron2', '{tmp}/lazy_detectron2.py', 'train.init_checkpoint={tmp}/missing.pth',
         keyword='init_checkpoint not found'),
    case('test.py', '{tmp}/unknown_type.py', '{tmp}/garbage.pt', keyword='not a PyTorch checkpoint',
         needs='mmengine'),

    case('eval_promptable.py', '--ann-file', '{tmp}/missing.json', '--img-dir', COCO_IMAGES,
         keyword='annotation file not found'),
    case('eval_promptable.py', *EVAL_DATA, '--model', '{tmp}/negative_depth.json', '--random-weights',
         keyword='depth must be a positive'),
    case('eval_promptable.py', *EVAL_DATA, '--max-queries-per-batch', '0', keyword='at least 1', usage=True),
    case('eval_zero_shot.py', *EVAL_DATA, '--detections', '{tmp}/bad_detections.json', '--out',
         '{tmp}/out.json', keyword='malformed'),

    case('convert_checkpoint.py', 'official', '{tmp}/garbage.pt', '{tmp}/out.pt', keyword='cannot read checkpoint'),
    case('convert_checkpoint.py', 'backbone', '{tmp}/no_vit.pt', '{tmp}/out.pth', '--target', 'vit',
         keyword='holds no ViT'),

    case('zoo.py', 'path', 'no_such_model', keyword='unknown checkpoint'),
    case('zoo.py', 'download', 'efficientsam_ti', keyword='not in the cache'),  # offline, empty cache

    case('extract_teacher_features.py', '{tmp}/unknown_type.py', '--out', '{tmp}/cache',
         keyword='target_generator', needs='mmengine'),
    case('extract_teacher_features.py', '{tmp}/unknown_type.py', '--out', '{tmp}/cache', '--batch-size', '0',
         keyword='at least 1', usage=True, needs='mmengine'),

    case('benchmark.py', '--runs', '0', keyword='at least 1', usage=True),
    case('benchmark_sami.py', '--img-size', 'large', keyword='not an integer', usage=True),
    case('benchmark_vitdet.py', '--size', '-1', keyword='at least 1', usage=True),
    case('benchmark_mask2former.py', '--warmup', '-1', keyword='at least 0', usage=True),
]

MORE_CASES = [  # variants of the mistakes above, checked in this process (no interpreter start-up)
    case('demo.py', '--point', '10', '9999', keyword='outside the 640x427 image'),
    case('demo.py', '--box', '50', '50', '10', '10', keyword='x2 >= x1'),
    case('demo.py', '--output', '{tmp}', keyword='is a folder'),
    case('demo.py', '--output', '{tmp}/not_an_image.jpg/overlay.png', keyword='is a file, not a folder'),
    case('demo.py', '--checkpoint', '{tmp}/missing.pt', keyword='checkpoint file not found'),
    case('demo.py', '--checkpoint', '{tmp}/no_vit.pt', keyword='does not match'),
    case('demo.py', '--checkpoint', 'zoo://no_such_model', keyword='unknown checkpoint'),
    case('demo.py', '--image', '{tmp}/blank.png', keyword='give --box and/or --point'),

    case('train.py', 'README.md', keyword='not a config file', needs='mmengine'),
    case('train.py', '{tmp}/undefined_name.py', keyword='NameError', needs='mmengine'),
    case('train.py', '{tmp}/unknown_type.py', '--resume', '{tmp}/missing.pth',
         keyword='checkpoint to resume from not found', needs='mmengine'),
    case('train.py', '{tmp}/unknown_type.py', '--cfg-options', 'a=[1,2', keyword='brackets', usage=True,
         needs='mmengine'),
    case('train.py', '{tmp}/unknown_type.py', '--auto-scale-lr', keyword='auto_scale_lr', needs='mmengine'),
    case('test.py', '{tmp}/unknown_type.py', '{tmp}/missing.pth', keyword='checkpoint not found',
         needs='mmengine'),

    case('eval_promptable.py', '--ann-file', '{tmp}/broken.json', '--img-dir', COCO_IMAGES,
         keyword='not valid JSON'),
    case('eval_promptable.py', '--ann-file', COCO_ANN, '--img-dir', '{tmp}/nowhere', keyword='image folder not found'),
    case('eval_promptable.py', *EVAL_DATA, '--prompts', 'box', 'many', keyword='unknown prompt'),
    case('eval_promptable.py', *EVAL_DATA, '--model', '{tmp}/broken.json', keyword='not valid JSON'),
    case('eval_promptable.py', *EVAL_DATA, '--model', '{tmp}/tiny.json', '--checkpoint', '{tmp}/garbage.pt',
         keyword='cannot read checkpoint'),
    case('eval_promptable.py', *EVAL_DATA, '--out', '{tmp}/no_folder/miou.json', keyword='output folder does not'),
    case('eval_zero_shot.py', *EVAL_DATA, '--detections', '{tmp}/missing.json', '--out', '{tmp}/out.json',
         keyword='detections file not found'),

    case('convert_checkpoint.py', 'backbone', '{tmp}/missing.pt', '{tmp}/out.pth', '--target', 'mmdet',
         keyword='checkpoint file not found'),
    case('convert_checkpoint.py', 'backbone', '{tmp}/no_vit.pt', '{tmp}', '--target', 'vit', keyword='is a folder'),

    case('extract_teacher_features.py', '{tmp}/missing.py', '--out', '{tmp}/cache',
         keyword='config file not found', needs='mmengine'),
    case('extract_teacher_features.py', '{tmp}/unknown_type.py', '--out', '{tmp}/not_an_image.jpg',
         keyword='is a file', needs='mmengine'),

    case('benchmark.py', '--device', 'nowhere', keyword='not a torch device', usage=True),
    case('benchmark.py', '--queries', '1', keyword='--queries must be at least 2', usage=True),
]


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """The bad inputs the cases name: files that are not what their names promise, and configs."""
    tmp = tmp_path_factory.mktemp('bad_inputs')
    (tmp / 'not_an_image.jpg').write_text('this is text, not a JPEG\n')
    Image.new('RGB', (32, 32)).save(tmp / 'blank.png')
    (tmp / 'garbage.pt').write_bytes(b'definitely not a torch.save file')
    (tmp / 'broken.json').write_text('{"images": [')
    (tmp / 'tiny.json').write_text(TINY_CONFIG)
    (tmp / 'negative_depth.json').write_text('{"depth": -1}')
    (tmp / 'bad_detections.json').write_text(json.dumps([dict(image_id=424242, category_id=1, score=0.9,
                                                              bbox=[1, 2, 3])]))
    torch.save({'state_dict': {'head.weight': torch.zeros(2, 2)}}, tmp / 'no_vit.pt')
    (tmp / 'syntax_error.py').write_text('model = dict(type="SAMI"\n')
    (tmp / 'undefined_name.py').write_text('model = dict(type=SAMI)\n')
    (tmp / 'unknown_type.py').write_text(f'model = dict(type="NoSuchModel")\nwork_dir = {str(tmp / "work")!r}\n')
    (tmp / 'lazy_detectron2.py').write_text('from detectron2.config import LazyCall as L\n')
    return tmp


def tool_env(tmp) -> dict:
    """Offline, with an empty zoo cache: no case may download anything."""
    return dict(OMP_NUM_THREADS='1', EFFICIENTSAM_OFFLINE='1', EFFICIENTSAM_HOME=str(tmp / 'zoo_cache'))


def tool_args(bad_input: Case, tmp):
    return [arg.replace('{tmp}', str(tmp)) for arg in bad_input.args]


def runnable(bad_input: Case) -> bool:
    return bad_input.needs is None or importlib.util.find_spec(bad_input.needs) is not None


def run_in_subprocess(bad_input: Case, tmp) -> Tuple[int, str]:
    proc = subprocess.run([sys.executable, os.path.join('tools', bad_input.tool), *tool_args(bad_input, tmp)],
                          cwd=REPO_ROOT, env=dict(os.environ, **tool_env(tmp)), capture_output=True, text=True,
                          timeout=240)
    return proc.returncode, proc.stderr


def check_error_output(bad_input: Case, returncode: int, stderr: str) -> None:
    lines = stderr.strip().splitlines()
    last = lines[-1] if lines else ''
    assert returncode == (2 if bad_input.usage else 1), stderr[-3000:]
    assert 'Traceback' not in stderr, stderr[-3000:]
    if bad_input.usage:
        assert USAGE_LINE.match(last), stderr[-3000:]
    else:
        assert last.startswith('error: '), stderr[-3000:]
        assert sum(line.startswith('error:') for line in lines) == 1, stderr[-3000:]
    assert bad_input.keyword.lower() in last.lower(), last


@pytest.fixture(scope='module')
def subprocess_results(request, inputs):
    """The runs of the selected subprocess cases (``-k`` narrows them), started together on a few
    workers: each is mostly an interpreter importing torch, so one after the other takes minutes."""
    selected = set()
    for item in request.session.items:
        callspec = getattr(item, 'callspec', None)
        if item.module is request.module and callspec is not None and 'bad_input' in callspec.params:
            selected.add(callspec.params['bad_input'])
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
        yield {c: pool.submit(run_in_subprocess, c, inputs) for c in selected if runnable(c)}


@pytest.mark.parametrize('bad_input', CASES)
def test_user_mistake_ends_with_one_error_line(bad_input: Case, subprocess_results):
    if not runnable(bad_input):
        pytest.skip(f'{bad_input.tool} needs {bad_input.needs} to get as far as this mistake')
    check_error_output(bad_input, *subprocess_results[bad_input].result())


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'tool_{name[:-3]}', os.path.join(REPO_ROOT, 'tools', name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('mistake', MORE_CASES)
def test_more_mistakes_end_with_one_error_line(mistake: Case, inputs, capsys, monkeypatch):
    if not runnable(mistake):
        pytest.skip(f'{mistake.tool} needs {mistake.needs} to get as far as this mistake')
    for key, value in tool_env(inputs).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(REPO_ROOT)
    main = load_tool(mistake.tool).main
    try:
        returncode = run_tool(main, tool_args(mistake, inputs))
    except SystemExit as usage_error:  # argparse exits itself; run_tool never does
        returncode = usage_error.code
    check_error_output(mistake, returncode, capsys.readouterr().err)


def test_run_tool_reports_user_errors_and_lets_bugs_through(capsys):
    def user_mistake(argv):
        raise FileNotFoundError(f'config file not found: {argv[0]}\n(check the path)')

    assert run_tool(user_mistake, ['x.py']) == 1
    assert capsys.readouterr().err == 'error: config file not found: x.py (check the path)\n'

    def unknown_key(argv):
        raise KeyError('image ids [7] are not in ann.json')

    assert run_tool(unknown_key, [], extra_errors=(KeyError,)) == 1
    assert capsys.readouterr().err == 'error: image ids [7] are not in ann.json\n'
    with pytest.raises(KeyError):  # without extra_errors a KeyError is a bug: its traceback stays
        run_tool(unknown_key, [])

    def bug(argv):
        return [][1]

    with pytest.raises(IndexError):
        run_tool(bug, [])

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_tool(interrupted, []) == 130
    assert capsys.readouterr().err == 'error: interrupted\n'
    assert run_tool(lambda argv: None, []) == 0
    assert run_tool(lambda argv: 3, []) == 3
    assert run_tool(lambda argv: {'metric': 1.0}, []) == 0  # test.py returns its metrics


def test_run_tool_knows_the_package_errors(capsys):
    from efficientsam_plugins.training.feature_cache import FeatureCacheError
    from efficientsam_plugins.zoo import ZooError

    for error in (FeatureCacheError('shard s.bin is corrupt'), ZooError('offline')):
        def fail(argv, error=error):
            raise error

        assert run_tool(fail, []) == 1
        assert capsys.readouterr().err == f'error: {error}\n'
