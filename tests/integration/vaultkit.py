"""Shared helpers for the vault's integration tests: trees, manifests, and one-line errors."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

from dmp_cli.layout import digest_key
from dmp_cli.manifest import Entry, format_line
from tests.servers import run_dmp

FILES = {
    "data/a.txt": b"alpha\n",
    "data/copy of a.txt": b"alpha\n",  # same content: one object
    "data/sub/b.bin": bytes(range(256)) * 400,
    'data/odd "name"\n.txt': b"quoted\n",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def small_tree(count: int, seed: int) -> dict[str, bytes]:
    """``count`` files of 16 B to 3 KiB (some the same content), in a few directories."""
    rng = random.Random(seed)
    files = {
        f"d{i % 7}/f{i:04}.dat": rng.randbytes(rng.randint(16, 3072)) for i in range(count - 5)
    }
    for i in range(5):  # the same content under other names: one object each
        files[f"copies/c{i}"] = files[f"d{i % 7}/f{i:04}.dat"]
    return files


def make_tree(root: Path, files: dict[str, bytes] = FILES) -> Path:
    """Write the files and a dmp manifest of them under ``root``; returns the manifest."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = root / "manifest.sha256"
    manifest.write_bytes(
        b"".join(format_line(Entry(sha(data), name)) for name, data in files.items())
    )
    return manifest


def dmp(
    *args: str, cwd: Path, env: dict[str, str], subprocess: bool = False
) -> CompletedProcess[bytes]:
    """`dmp ARGS` in this process, or with ``subprocess=True`` in one of its own."""
    result = run_dmp(*args, cwd=cwd, env=env, timeout=120, subprocess=subprocess)
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def stderr_lines(result: CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode("utf-8", "replace").splitlines()


def one_error(result: CompletedProcess[bytes], code: int, text: str) -> None:
    """Exactly one stderr line, ``dmp: ...``, containing ``text``; and the exit status."""
    lines = stderr_lines(result)
    assert result.returncode == code, result.stderr.decode()
    assert len(lines) == 1 and lines[0].startswith("dmp: ") and text in lines[0], lines


def vault_path(root: Path, data: bytes) -> Path:
    return root.joinpath(*digest_key(sha(data)).split("/"))


def distinct(files: dict[str, bytes] = FILES) -> int:
    return len({sha(data) for data in files.values()})


def listing(root: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names
    )


def incomplete(s3: Any, bucket: str, key: str = "") -> list[str]:
    """The ids of the incomplete uploads under ``key``, as the server lists them."""
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    return [upload["UploadId"] for upload in uploads]


def wait_for_a_part(s3: Any, bucket: str, key: str) -> None:
    """Until the server holds an upload of ``key`` with a part in it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for upload_id in incomplete(s3, bucket, key):
            if s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts"):
                return
        time.sleep(0.05)
    raise AssertionError(f"no part of {key} reached the server")
