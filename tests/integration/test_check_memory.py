"""`--check` streams the manifest: memory stays flat however many lines it has."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import dmp_env

pytestmark = pytest.mark.integration

# Runs dmp as its child, then prints the peak RSS (KiB) of dmp and of the processes dmp
# waited for (its pool workers): RUSAGE_CHILDREN covers every waited-for descendant.
MEASURE = """
import resource, subprocess, sys
proc = subprocess.run([sys.executable, "-m", "dmp_cli", *sys.argv[1:]],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.stderr.buffer.write(proc.stderr)
"""


def peak_rss_mib(manifest: Path, *flags: str) -> tuple[int, float, bytes]:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE,
            "-j",
            "2",
            "manifest",
            "--check",
            *flags,
            "--manifest",
            str(manifest),
        ],
        cwd=manifest.parent,
        env=dmp_env(),
        capture_output=True,
        timeout=120,
    )
    status, kib = proc.stdout.split()
    return int(status), int(kib) / 1024, proc.stderr


def write_manifest(path: Path, lines: int) -> None:
    digest = hashlib.sha256(b"small\n").hexdigest()
    with path.open("w") as stream:
        for i in range(lines):
            if i % 4:
                stream.write(f"{digest}  small\n")
            else:
                stream.write(f"{digest}  missing/file-{i:07d}-{'x' * 60}\n")


def test_check_of_200000_lines_holds_memory_flat(tmp_path: Path) -> None:
    (tmp_path / "small").write_bytes(b"small\n")
    write_manifest(tmp_path / "big", 200_000)
    write_manifest(tmp_path / "tiny", 2_000)
    status, big, stderr = peak_rss_mib(tmp_path / "big", "--status", "--ignore-missing")
    assert (status, stderr) == (0, b"")
    status, tiny, _ = peak_rss_mib(tmp_path / "tiny", "--status", "--ignore-missing")
    assert status == 0
    assert big < 150, f"peak RSS {big:.0f} MiB"
    assert big - tiny < 25, f"peak RSS grew from {tiny:.0f} to {big:.0f} MiB"


def test_check_with_output_holds_memory_flat(tmp_path: Path) -> None:
    (tmp_path / "small").write_bytes(b"small\n")
    write_manifest(tmp_path / "big", 200_000)
    status, big, stderr = peak_rss_mib(tmp_path / "big", "--quiet")
    assert status == 1
    assert stderr.endswith(b"dmp: WARNING: 50000 listed files could not be read\n")
    assert big < 150, f"peak RSS {big:.0f} MiB"
