"""harmony command line: one module per stage, the study store and the analysis."""

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it from here)
