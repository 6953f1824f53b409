"""The one exception family the command line reports as a user's mistake.

`InputError` means: what the user gave (a config value, an option, a file, collected data) is
wrong, and the message names it and the allowed values. The CLI prints it as one line and exits 2;
any other exception is a bug and is reported as an internal error (exit 1), with its traceback
behind `--debug`. It subclasses `ValueError` so that pydantic validators turn it into a
validation error of the field, and callers that catch `ValueError` keep working.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input, named: one line for the user, no traceback."""


def validation_problems(err) -> list[str]:
    """A pydantic `ValidationError` as one `field.path: message` line per problem, without
    pydantic's type codes and links."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return lines
