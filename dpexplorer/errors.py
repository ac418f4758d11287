"""User-facing errors: each carries a one-line reason that the CLI and the app show as is."""


class DPExplorerError(Exception):
    """Base of every error whose message is meant for the user."""


class ImageError(DPExplorerError, ValueError):
    """The input is not an image we can read, or is outside the supported size range."""


class BitstreamError(DPExplorerError, ValueError):
    """A .dpx file is truncated, corrupted, of another format version or made by other weights."""


class WeightsError(DPExplorerError, RuntimeError):
    """Model weights are missing, corrupted or do not match their manifest."""
