"""cnnbench: re-run the classic CNN papers and their ablations."""

__version__ = "0.1.0"
