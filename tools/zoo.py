"""Model zoo command line: list, download, verify and locate checkpoints.

    python tools/zoo.py list
    python tools/zoo.py download efficientsam_ti [--offline]
    python tools/zoo.py verify [NAME ...]
    python tools/zoo.py path efficientsam_ti

Environment: EFFICIENTSAM_HOME, EFFICIENTSAM_OFFLINE, EFFICIENTSAM_ZOO_MANIFEST,
EFFICIENTSAM_ZOO_MIRROR (see efficientsam_plugins/zoo/__init__.py).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from efficientsam_plugins.cli import run_tool  # noqa: E402
from efficientsam_plugins.zoo.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(run_tool(main))
