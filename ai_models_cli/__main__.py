"""``python -m ai_models_cli``."""

import sys

from ai_models_cli.cli import main

sys.exit(main())
