"""The one exception type users see: a one-line message, no traceback from the CLI."""


class AirInterpError(Exception):
    """Bad input (file, shape, config, argument). The message names the problem in one line."""
