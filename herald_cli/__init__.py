"""herald: the operator's command line for the Herald API (stdlib only)."""

__version__ = "0.1.0"
