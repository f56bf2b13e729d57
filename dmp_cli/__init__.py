"""dmp: sha256 manifests, verified like `sha256sum --check`, archived to a content-addressed
vault on S3 or a directory.

The Python API (``dmp_cli.api``), for use from another script::

    from dmp_cli import api

    api.create(dirs=["data"], recursive=True, manifest="data.sha256")
    report = api.archive("data.sha256", on_row=print)
    assert report.status == 0
"""

__version__ = "0.1.0"

from dmp_cli import api
from dmp_cli.api import CheckResult, check_manifest, create_manifest, read_manifest
from dmp_cli.errors import DmpError
from dmp_cli.manifest import Entry

__all__ = [
    "CheckResult",
    "DmpError",
    "Entry",
    "__version__",
    "api",
    "check_manifest",
    "create_manifest",
    "read_manifest",
]
