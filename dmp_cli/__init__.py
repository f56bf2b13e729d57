"""dmp: sha256 manifests, verified like `sha256sum --check`, archived to a content-addressed
vault on S3 or a directory.

The Python API, for use from another script::

    import dmp_cli

    entries = dmp_cli.create_manifest(["data"], recursive=True, manifest="data.sha256")
    for entry in dmp_cli.read_manifest("data.sha256"):
        print(entry.digest, entry.path)
    result = dmp_cli.check_manifest("data.sha256")
    assert result.ok(), result.failures
"""

__version__ = "0.1.0"

from dmp_cli.api import CheckResult, check_manifest, create_manifest, read_manifest
from dmp_cli.errors import DmpError
from dmp_cli.manifest import Entry

__all__ = [
    "CheckResult",
    "DmpError",
    "Entry",
    "__version__",
    "check_manifest",
    "create_manifest",
    "read_manifest",
]
