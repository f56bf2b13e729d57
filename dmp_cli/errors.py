"""One error hierarchy for dmp; only the CLI entry point turns these into exit codes."""

from __future__ import annotations


class DmpError(Exception):
    """Base of every error dmp raises on purpose. The message is one line for the user.

    ``transient`` marks, where the error is raised, a failure that a later attempt may
    not meet (throttling, a server error, a reset connection, a timeout): the file is
    tried again, with backoff, before its failure is reported. ``fatal`` marks a failure
    that no later file of the run can escape: the run stops at the first."""

    exit_code = 1
    transient = False
    fatal = False

    def __init__(self, message: str = "", *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient


class UsageError(DmpError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = 2


class InputError(DmpError):
    """A file or directory named on the command line cannot be used."""


class ManifestError(DmpError):
    """A manifest cannot be read or written."""


class StoreError(DmpError):
    """An object store (S3 or a directory) refused or failed a request."""


class IntegrityError(DmpError):
    """Bytes do not hash to the checksum they were expected to have."""


class BrokerError(DmpError):
    """The Celery broker or result backend cannot be used."""


class BrokerUnreachable(BrokerError):
    """The broker did not answer (refused, reset or timed out): it may be back soon."""


class ObjectMissing(StoreError):
    """The store has no object at the key asked for."""


class FatalStoreError(StoreError):
    """The store cannot be used at all (no bucket, no credentials, no endpoint): no later
    request can succeed, so the run stops rather than fail every file alike."""

    fatal = True


class TargetUnusable(DmpError):
    """The filesystem a fetch writes to takes no more files (full, over quota, read-only):
    the run stops rather than fail every later file alike. The message names the file."""

    fatal = True


class RunStopped(DmpError):
    """A run ended early by a failure that every later file would meet too."""


class PathRefused(DmpError):
    """A manifest path that dmp will not write to (tar's rules; symbolic links)."""


class ObjectExists(StoreError):
    """A put-if-absent found the object already there: nothing was written."""


class ColdObject(StoreError):
    """The store keeps the object in a storage class it does not read without a restore
    first (S3 Glacier Flexible Retrieval, Deep Archive; tape behind an S3 endpoint).
    Where a HEAD said so, ``storage_class`` is the class, and ``restore`` whether one is
    under way ("ongoing") or not (None); a refused GET tells neither."""

    def __init__(
        self, message: str = "", *, storage_class: str | None = None, restore: str | None = None
    ) -> None:
        super().__init__(message)
        self.storage_class = storage_class
        self.restore = restore
