"""dmp: sha256 manifests, verified like `sha256sum --check`, archived to a content-addressed
vault on S3 or a directory.

The Python API (``dmp_cli.api``), for use from another script::

    from dmp_cli import api

    api.create(dirs=["data"], recursive=True, manifest="data.sha256")
    report = api.archive("data.sha256", on_row=print)
    assert report.status == 0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names, each where it lives ("module" or "module:attribute"), imported on
# first use (PEP 562): importing one of dmp's modules, dmp_cli.manifest say, imports
# that module and what it needs, never the whole API.
_PUBLIC = {
    "CheckResult": "dmp_cli.api:CheckResult",
    "DmpError": "dmp_cli.errors:DmpError",
    "Entry": "dmp_cli.manifest:Entry",
    "api": "dmp_cli.api",
    "check_manifest": "dmp_cli.api:check_manifest",
    "create_manifest": "dmp_cli.api:create_manifest",
    "read_manifest": "dmp_cli.api:read_manifest",
}

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

if TYPE_CHECKING:
    from dmp_cli import api
    from dmp_cli.api import CheckResult, check_manifest, create_manifest, read_manifest
    from dmp_cli.errors import DmpError
    from dmp_cli.manifest import Entry


def __getattr__(name: str) -> Any:
    where = _PUBLIC.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attribute = where.partition(":")
    value = importlib.import_module(module)
    if attribute:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
