"""The one exception type whose message is shown to users as a single line."""


class UserError(Exception):
    """Bad input from the user: a missing file, an unknown name, an out-of-range value.

    The message says what is wrong and what to do; the CLI prints it on one line and exits 2.
    """

    exit_status = 2


class SomeNotComputed(UserError):
    """The command finished, but some of the metrics asked for could not run here (e.g. IS/FID
    without Inception weights); the others are recorded. The CLI exits 3, so scripts can tell it
    from bad input (2)."""

    exit_status = 3
