"""The ``dkoar`` command line (``main``); each ``*_commands`` module holds a group of subcommands."""

from .main import main

__all__ = ["main"]
