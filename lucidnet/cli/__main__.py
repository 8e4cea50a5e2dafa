"""``python -m lucidnet.cli``: the same as the ``lucidnet`` command."""

import sys

from .commands import main

sys.exit(main())
