"""The one exception type whose message is shown to users as a single line."""


class UserError(Exception):
    """Bad input from the user: a missing file, an unknown name, an out-of-range value.

    The message says what is wrong and what to do; the CLI prints it on one line and exits 2.
    """
