"""SqueezeSAM (arXiv 2312.06736): early-fusion UNet with a bottom transformer."""
from .squeeze_sam import BASE_CONFIG, SqueezeSam, resolve_config

__all__ = ['SqueezeSam', 'resolve_config', 'BASE_CONFIG']
