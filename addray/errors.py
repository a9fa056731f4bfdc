"""The base of every error that a user's mistake causes: the CLIs show it as one line."""


class UserError(Exception):
    """A bad file, option or value; its message names it and the rule it breaks."""
