"""``python -m efficientsam_plugins.zoo``: the same CLI as ``tools/zoo.py``, for installed users."""
import sys

from ..cli import run_tool
from .cli import main

sys.exit(run_tool(main))
