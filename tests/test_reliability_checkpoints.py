"""Checkpoints under faults: a smoke training run killed (SIGKILL) in the middle of writing a
checkpoint, with ``max_keep_ckpts=1``, then resumed; auto-resume and ``--resume PATH`` with a
truncated newest checkpoint."""
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT

pytest.importorskip('mmengine')
pytest.importorskip('pycocotools')

CONFIG = os.path.join('configs', 'efficientsam', 'efficientsam_ti_sa1b_smoke.py')
# Runs tools/train.py; with KILL_AT=N, the process SIGKILLs itself halfway through writing the bytes
# of checkpoint iter_N (whatever file name the checkpoint hook writes them to).
CHILD = r'''
import os, runpy, signal, sys
kill_at = sys.argv[1]
if kill_at:
    from mmengine.fileio.backends.local_backend import LocalBackend
    put = LocalBackend.put

    def dying_put(self, obj, filepath):
        if f'iter_{kill_at}.pth' in os.path.basename(str(filepath)):
            with open(filepath, 'wb') as stream:
                stream.write(obj[:len(obj) // 2])
                stream.flush()
                os.fsync(stream.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return put(self, obj, filepath)
    LocalBackend.put = dying_put
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def train(work_dir, max_iters, keep, *extra, kill_at=''):
    """tools/train.py on the smoke config: checkpoints every 2 iterations, no validation."""
    command = [sys.executable, '-c', CHILD, str(kill_at), os.path.join(REPO_ROOT, 'tools', 'train.py'), CONFIG,
               '--work-dir', str(work_dir), '--cfg-options', f'train_cfg.max_iters={max_iters}',
               'default_hooks.checkpoint.interval=2', f'default_hooks.checkpoint.max_keep_ckpts={keep}',
               'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None', *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})


def checkpoints(work_dir):
    return sorted(name for name in os.listdir(work_dir) if name.endswith('.pth'))


def test_kill_during_checkpoint_write_keeps_the_last_good_one_and_resumes(tmp_path):
    killed = train(tmp_path, 6, 1, kill_at=4)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert checkpoints(tmp_path) == ['iter_2.pth']  # the previous checkpoint survived the killed write
    resumed = train(tmp_path, 6, 1, '--resume')
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert 'resumed epoch: 0, iter: 2' in log and str(tmp_path / 'iter_2.pth') in log
    assert checkpoints(tmp_path) == ['iter_6.pth'] and not [n for n in os.listdir(tmp_path) if n.endswith('.partial')]
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_6.pth')


def test_auto_resume_skips_a_truncated_newest_checkpoint(tmp_path):
    first = train(tmp_path, 4, 2)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    newest = tmp_path / 'iter_4.pth'
    newest.write_bytes(newest.read_bytes()[:newest.stat().st_size // 2])  # truncated in place, still the newest
    resumed = train(tmp_path, 6, 2, '--resume')
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert f'skipping {newest}: an incomplete checkpoint' in log and 'resumed epoch: 0, iter: 2' in log
    assert checkpoints(tmp_path) == ['iter_4.pth', 'iter_6.pth']  # iter_4 written again, whole


def test_resume_path_falls_back_to_the_newest_complete_checkpoint(tmp_path, monkeypatch):
    """``--resume PATH`` of an incomplete file: the newest complete checkpoint beside it, with a
    warning naming both (no training: the choice only)."""
    from efficientsam_plugins.openmmlab.launch import resume_checkpoint
    torch.save({'state_dict': {}}, tmp_path / 'iter_2.pth')
    (tmp_path / 'iter_4.pth').write_bytes(b'PK\x03\x04' + b'\0' * 100)  # a zip's start, cut short: no directory
    os.utime(tmp_path / 'iter_2.pth', ns=(1, 1))  # older
    warnings = []
    monkeypatch.setattr('efficientsam_plugins.openmmlab.launch._warn', warnings.append)
    assert resume_checkpoint(str(tmp_path / 'iter_4.pth'), 'unused') == str(tmp_path / 'iter_2.pth')
    assert warnings == [f'skipping {tmp_path / "iter_4.pth"}: an incomplete checkpoint (the run was stopped while '
                        f'writing it, or the file was damaged)',
                        f'--resume {tmp_path / "iter_4.pth"} is incomplete; resuming from {tmp_path / "iter_2.pth"}, '
                        f'the newest complete checkpoint beside it']
    assert resume_checkpoint('auto', str(tmp_path)) == str(tmp_path / 'iter_2.pth')
    (tmp_path / 'iter_2.pth').unlink()
    with pytest.raises(ValueError, match='iter_4.pth is not a PyTorch checkpoint.*nor does its folder hold'):
        resume_checkpoint(str(tmp_path / 'iter_4.pth'), 'unused')
    warnings.clear()
    assert resume_checkpoint('auto', str(tmp_path)) is None
    assert warnings[-1] == f'--resume: no complete checkpoint in {tmp_path}; training from the start'


def test_no_shipped_config_can_lose_its_last_checkpoint():
    """Even outside tools/train.py (mmengine's own CheckpointHook removes the oldest checkpoint before
    writing the next), every config keeps at least two checkpoints, or all (mmengine's default, -1);
    tools/train.py also swaps in the AtomicCheckpointHook."""
    from efficientsam_plugins.openmmlab.launch import load_config
    found = {}
    for folder, _, names in os.walk(os.path.join(REPO_ROOT, 'configs')):
        for name in names:
            if name.endswith('.py'):
                with open(os.path.join(folder, name), encoding='utf-8') as stream:
                    found[os.path.join(folder, name)] = re.findall(r'max_keep_ckpts\s*=\s*(-?\d+)', stream.read())
    assert sum(map(len, found.values())) >= 10
    assert {path: keep for path, keep in found.items() if any(k != '-1' and int(k) < 2 for k in keep)} == {}
    cfg = load_config(os.path.join(REPO_ROOT, CONFIG))
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
