"""SqueezeSAM (arXiv 2312.06736): early-fusion UNet with a bottom transformer, and its predictor."""
from .squeeze_sam import BASE_CONFIG, SqueezeSam, build_squeeze_sam, resolve_config
from .predictor import SqueezeSamPredictor
from .salient import salient_clicks

__all__ = ['SqueezeSam', 'build_squeeze_sam', 'resolve_config', 'BASE_CONFIG', 'SqueezeSamPredictor', 'salient_clicks']
