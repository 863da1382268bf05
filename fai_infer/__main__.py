"""python -m fai_infer: the same CLI as the installed ``fai`` command."""

import sys

from fai_infer.cli.main import main

sys.exit(main())
