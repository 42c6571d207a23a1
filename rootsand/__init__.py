"""rootsand: run a command in a rootless sandbox."""

__version__ = "0.1.0"
