"""Errors that the command line and the GUI show to the user as one line."""


class SerLiveError(Exception):
    """A problem the user can act on; its message is shown without a traceback."""


class AudioFileError(SerLiveError):
    """A recording that cannot be read, or that is unfit for analysis."""


class ModelError(SerLiveError):
    """A model file or sidecar that is missing, corrupt or does not match this code."""


class DeviceError(SerLiveError):
    """An input device that is missing, busy, or was lost mid-session."""
