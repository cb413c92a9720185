"""`python -m study.featurenet train|evaluate`: see study/featurenet/cli.py."""

import sys

from study.featurenet.cli import main

sys.exit(main())
