"""The one error type a user sees as a one-line message."""


class ConfigError(ValueError):
    """Bad input from the user's config: the message says what to change."""
