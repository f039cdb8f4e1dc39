"""Model zoo command line: list, download, verify and locate checkpoints.

    python tools/zoo.py list
    python tools/zoo.py download efficientsam_ti [--offline]
    python tools/zoo.py verify [NAME ...]
    python tools/zoo.py path efficientsam_ti

Environment: EFFICIENTSAM_HOME, EFFICIENTSAM_OFFLINE, EFFICIENTSAM_ZOO_MANIFEST,
EFFICIENTSAM_ZOO_MIRROR (see efficientsam_plugins/zoo/__init__.py).
"""
import sys
from pathlib import Path

try:
    from efficientsam_plugins.cli import run_tool
    from efficientsam_plugins.zoo.cli import main
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from efficientsam_plugins.cli import run_tool
    from efficientsam_plugins.zoo.cli import main

if __name__ == '__main__':
    sys.exit(run_tool(main))
