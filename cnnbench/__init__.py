"""cnnbench: re-run the classic CNN papers and their ablations."""

__version__ = "0.1.0"

# The zoo's Python API, imported on first use: it needs torch, which takes
# seconds to import, and `cnnbench --help` imports this package for __version__.
_LAZY_EXPORTS = {"create_model", "list_models", "model_spec"}


def __getattr__(name: str):
    if name in _LAZY_EXPORTS:
        from cnnbench.models import api

        return getattr(api, name)
    raise AttributeError(f"module 'cnnbench' has no attribute '{name}'")


def __dir__():
    return sorted([*globals(), *_LAZY_EXPORTS])
