"""`python -m bot.cli`: the `lessonbot` command, run by this interpreter (how the benches and tests start it)."""

import sys

from bot.cli import main

sys.exit(main())
