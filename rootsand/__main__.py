import os
import sys

# `python -m rootsand` puts the current directory first on sys.path. A sandbox that could write it may
# have left modules there that rootsand imports later, on the host and in the setup process before its
# seccomp filter: the directory goes. (rootsand's own modules come from its package's __path__.)
if not sys.flags.safe_path and sys.path:
    try:
        here = os.getcwd()
    except OSError:  # a removed current directory: nothing can be imported from it anyway
        here = None
    if sys.path[0] in ("", here):
        del sys.path[0]

from rootsand.cli.entry import main  # noqa: E402

main()
