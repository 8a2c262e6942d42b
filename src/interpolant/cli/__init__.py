"""The ``interpolant`` command line (``interpolant --help``); see :mod:`interpolant.api`."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
