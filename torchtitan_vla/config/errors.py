"""The one exception type of the configuration layer.

Every problem a user can make in a TOML file or on the command line becomes a ``ConfigError`` whose
message names the culprit (file, key, expected type, value). ``train.py`` prints it as one line on
stderr and exits with code 2, without a traceback.
"""


class ConfigError(ValueError):
    """A configuration problem described well enough to fix it without reading code."""
