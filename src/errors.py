"""The kit's own error type."""


class KitError(ValueError):
    """A problem with the user's input, data, flags or environment.

    The message names the problem, echoes the offending value and says what to do. The command line
    prints it as one line (no traceback) and exits with status 2.
    """
