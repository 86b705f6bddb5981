"""The one exception type whose message is shown to the user as a single line."""


class UserError(Exception):
    """Bad input or environment: the message says what is wrong and what to do."""
