"""The one error type for bad input: its message names the file, tensor or field to fix."""


class DeltaPlanError(Exception):
    """Input the user must fix (a file, a tensor, an option). The CLI prints the message alone,
    without a traceback, and exits non-zero. Bugs in this package raise other exceptions."""
