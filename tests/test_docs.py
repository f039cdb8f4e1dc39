"""The documentation: the site builds with ``mkdocs build --strict`` (dead links, missing pages and
broken API references fail), every Python block of README.md and docs/ that follows a
``<!-- runnable -->`` line runs, and no page carries run-history prose.

Runnable blocks run in one process per file, from the repository root, sharing one namespace (a page
reads top to bottom). Where a block names the released weights (``build_predictor('efficientsam_ti')``)
the model zoo serves seeded random weights under that name through a user manifest, offline: the
examples run exactly as written and nothing is downloaded.
"""
import glob
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, official_state_dict

RUNNABLE = re.compile(r'^<!-- runnable -->\n```python\n(.*?)^```', re.MULTILINE | re.DOTALL)
PAGES = sorted([os.path.join(REPO_ROOT, 'README.md')] + glob.glob(os.path.join(REPO_ROOT, 'docs', '**', '*.md'),
                                                                   recursive=True))
RUN_HISTORY = re.compile(r'contended|closing note|issue [0-9]|second session|this session', re.IGNORECASE)

# Runs the blocks given as JSON on stdin; a failure names the file and line of its block.
RUNNER = """
import json, sys
namespace = {'__name__': '__main__'}
for where, code in json.load(sys.stdin):
    exec(compile(code, where, 'exec'), namespace)
"""


def runnable_blocks(path: str) -> list:
    """``[(where, code)]`` of the runnable blocks of a markdown file; code keeps its line numbers."""
    with open(path, encoding='utf-8') as stream:
        text = stream.read()
    blocks = []
    for match in RUNNABLE.finditer(text):
        first_line = text.count('\n', 0, match.start(1))  # lines before the code: its line numbers stay
        blocks.append((os.path.relpath(path, REPO_ROOT), '\n' * first_line + match.group(1)))
    return blocks


def test_mkdocs_build_is_strict_clean(tmp_path):
    pytest.importorskip('mkdocs', reason='mkdocs is not installed (pip install -e ".[dev]")')
    result = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir', str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f'mkdocs build --strict failed:\n{result.stdout}{result.stderr}'
    assert os.path.isfile(tmp_path / 'benchmarks' / 'index.html')


def test_pages_carry_no_run_history():
    pages = PAGES + glob.glob(os.path.join(REPO_ROOT, 'configs', '*', 'README.md'))
    found = []
    for path in pages:
        with open(path, encoding='utf-8') as stream:
            found += [f'{os.path.relpath(path, REPO_ROOT)}:{number}: {line.strip()}'
                      for number, line in enumerate(stream, 1) if RUN_HISTORY.search(line)]
    assert not found, 'run-history prose in the documentation:\n' + '\n'.join(found)


def test_readme_stays_short():
    with open(os.path.join(REPO_ROOT, 'README.md'), encoding='utf-8') as stream:
        assert sum(1 for _ in stream) <= 260


@pytest.fixture(scope='module')
def offline_zoo(tmp_path_factory):
    """Environment in which the zoo name ``efficientsam_ti`` resolves to seeded random weights."""
    import torch
    home = tmp_path_factory.mktemp('zoo')
    torch.save({'model': official_state_dict('ti')}, home / 'random_efficientsam_ti.pt')
    manifest = home / 'manifest.json'
    manifest.write_text(json.dumps([dict(
        name='efficientsam_ti', filename='random_efficientsam_ti.pt', arch=dict(family='efficientsam', config='ti'),
        urls=['https://example.invalid/random_efficientsam_ti.pt'],
        description='seeded random weights for tests/test_docs.py')]), encoding='utf-8')
    return dict(os.environ, EFFICIENTSAM_HOME=str(home), EFFICIENTSAM_OFFLINE='1',
                EFFICIENTSAM_ZOO_MANIFEST=str(manifest), PYTHONPATH=REPO_ROOT)


@pytest.mark.parametrize('page', [os.path.relpath(p, REPO_ROOT) for p in PAGES if runnable_blocks(p)])
def test_runnable_examples_run(page, offline_zoo):
    blocks = runnable_blocks(os.path.join(REPO_ROOT, page))
    result = subprocess.run([sys.executable, '-c', RUNNER], input=json.dumps(blocks), cwd=REPO_ROOT,
                            env=offline_zoo, capture_output=True, text=True)
    assert result.returncode == 0, f'a runnable example of {page} failed:\n{result.stdout}{result.stderr}'
