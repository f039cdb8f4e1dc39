"""The one place that imports detectron2 on behalf of the adapter, with an error that says what to do."""

TESTED_DETECTRON2_COMMIT = '02b5c4e295e990042a714712c21dc79b731e8833'
INSTALL_HINT = (
    'install it from its git repository (it has no PyPI release) after torch, e.g. `pip install '
    f'--no-build-isolation "git+https://github.com/facebookresearch/detectron2.git@{TESTED_DETECTRON2_COMMIT}"` '
    '(the commit this adapter was tested with)')


def require_detectron2() -> None:
    try:
        import detectron2  # noqa: F401
    except ImportError as err:
        raise ImportError(f'efficientsam_plugins.detectron2 needs the package "detectron2", which cannot '
                          f'be imported ({err}); {INSTALL_HINT}') from err
