"""``python -m lucidnet``: the same as the ``lucidnet`` command."""

import sys

from .cli.commands import main

sys.exit(main())
