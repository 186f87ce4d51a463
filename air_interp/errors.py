"""The one exception type users see: a one-line message, no traceback from the CLI."""


class AirInterpError(Exception):
    """Bad input (file, shape, config, argument). The message names the problem in one line."""


def first_line(err: BaseException) -> str:
    """The first line of another library's error message (or its type), to quote in a one-line message."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
