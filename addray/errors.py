"""Errors that a user's mistake causes, one class per cause. Every command line shows
them as one line (``error: ...``) and exits 2 (``addray.cli``); each message names the
file or option, the value and the rule it breaks."""


class UserError(Exception):
    """A bad file, option or value; its message names it and the rule it breaks."""


class ConfigError(UserError, ValueError):
    """A config file, search-space file or command-line option breaks a rule."""


class DataError(UserError, ValueError):
    """A data, pairs, checkpoint or results file is missing, unreadable or malformed."""


class CheckpointError(DataError):
    """A file that is missing or is not a usable addray checkpoint."""


class DeviceError(UserError):
    """The requested device (CUDA) is not available on this machine."""


class ClusterError(UserError):
    """Ray cannot be started or joined, or cannot satisfy the sweep's requests."""


class StudyError(UserError):
    """A study or run folder cannot be used as asked: it is held by another driver,
    already holds results, or has nothing to resume."""
