"""rootsand: run a command in a rootless sandbox."""

import time as _time

STARTED = _time.monotonic()  # rootsand's first line of Python: what `run -v` times its stages from

__version__ = "0.1.0"
