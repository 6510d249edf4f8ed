"""`python -m tfner_client`: the same command line as `tfner-client`."""

import sys

from tfner_client.cli import main

sys.exit(main(prog="python -m tfner_client"))
