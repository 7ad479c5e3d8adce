"""Typed errors. The CLI turns every VaeganError into one line and exit code 2."""


class VaeganError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class ConfigError(VaeganError, ValueError):
    """An impossible configuration (image size 20, latent dim 0, ...)."""


class DataError(VaeganError):
    """A dataset that cannot be read or is empty."""


class CheckpointError(VaeganError):
    """A run directory that is missing, half-written or does not match its config."""


class TrainingDiverged(VaeganError):
    """A loss became NaN/inf; the last good state was saved for --resume."""


class ExportError(VaeganError):
    """An export that failed a check (parity, quality under --strict, bad output dir)."""


class ArtifactError(VaeganError):
    """An artifact dir or file that is missing, corrupted or built for another machine."""


class ArtifactMissing(ArtifactError):
    """A file the manifest lists is not there."""


class ArtifactCorrupt(ArtifactError):
    """A file that does not match its sha256 in the manifest, or a manifest that is not valid."""


class InputError(VaeganError, ValueError):
    """Bad input to the runtime API (shape, dtype, latent dim, NaN, n)."""


class BackendUnavailable(VaeganError):
    """The requested engine (TensorRT, OpenVINO, a provider) is not installed or usable here."""


class Overloaded(VaeganError):
    """The micro-batcher's queue is full: retry later."""
