"""The ``lucidnet`` command, on top of every other part: ``args`` (the argument parser and
``--config`` files), ``commands`` (the commands and :func:`main`), ``demo`` (the digits demo),
``tune`` (hyper-parameter search, on the commands' helpers)."""

from . import images as _images  # noqa: F401  (fills commands.IMAGE_COMMANDS)
from .commands import COMMANDS, main
from .tune import cmd_tune

# ``tune`` reuses train's preparation from ``commands``, so ``commands`` cannot import it (no
# import cycle, lazy ones included): the command is wired here, as lucidnet/__init__.py wires
# the Sequential delegations. Importing ``lucidnet.cli.commands`` runs this package first.
COMMANDS["tune"] = cmd_tune

__all__ = ["main"]
