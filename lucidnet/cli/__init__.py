"""The ``lucidnet`` command, on top of every other part: ``args`` (the argument parser and
``--config`` files), ``commands`` (the commands and :func:`main`), ``demo`` (the digits demo)."""

from . import images as _images  # noqa: F401  (fills commands.IMAGE_COMMANDS)
from .commands import main

__all__ = ["main"]
