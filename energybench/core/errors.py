"""The one exception type whose message is shown to users as a single line, and how a message
below the face names the user's options without knowing which face they came through.

A message that asks the user to change an option writes `option("n")` or `option("data", "PATH")`,
not a flag. Each face renders those in its own words (`render_options`): the command line as
flags (`--n`, `--data PATH`), the Python API as arguments (`n`, `data=PATH`). `str()` of an error
gives the neutral wording, the argument names.
"""

from __future__ import annotations

import re
from typing import Callable

_OPTION = re.compile(r"«([a-z][a-z0-9_]*)(?: ([^«»]*))?»")


def option(name: str, value: object = None) -> str:
    """A user's option inside a message: `name` is its argument name (out_dir, batch_size, force;
    `param` for a protocol value, whose `value` is KEY=VALUE), `value` what to give it, if any."""
    return f"«{name}»" if value is None else f"«{name} {value}»"


def neutral_word(name: str, value: str | None) -> str:
    """An option as an argument: `n`, `data=PATH`; a protocol value as itself (`steps=100`)."""
    if name == "param":
        return value or "a protocol value"
    return name if value is None else f"{name}={value}"


def render_options(text: str, word: Callable[[str, str | None], str] = neutral_word) -> str:
    """`text` with every option marker replaced by word(name, value)."""
    return _OPTION.sub(lambda m: word(m[1], m[2]), str(text))


class UserError(Exception):
    """Bad input from the user: a missing file, an unknown name, an out-of-range value.

    The message says what is wrong and what to do; the CLI prints it on one line and exits 2.
    Options in it are `option(...)` markers (see the module docstring): `template` keeps them for
    a face to render; `str()` renders them as argument names.
    """

    exit_status = 2

    @property
    def template(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return render_options(self.template)

    def reworded(self, text: str) -> "UserError":
        """The same error (class, exit status, attributes) with the message `text`: how a face
        renders the option markers for its users. Never calls a subclass's __init__, whose
        signature may differ (RangeError takes a field and a detail)."""
        copy = type(self).__new__(type(self), text)
        copy.__dict__.update(self.__dict__)
        copy.args = (text,)
        return copy


class SomeNotComputed(UserError):
    """The command finished, but some of the metrics asked for could not run here (e.g. IS/FID
    without Inception weights); the others are recorded. The CLI exits 3, so scripts can tell it
    from bad input (2)."""

    exit_status = 3
