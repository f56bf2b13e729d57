import hashlib
import os

import pytest

from dmp_cli.digest import CHUNK, FileDigest, digest_fd, digest_file
from dmp_cli.ops import run_batch
from dmp_cli.options import Work


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17],
    ids=["empty", "one", "chunk-1", "chunk", "chunk+1", "multi"],
)
def test_digest_file_matches_hashlib(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert digest_file(str(path)) == (hashlib.sha256(data).hexdigest(), size)


def test_small_file_is_done_after_opening(tmp_path):
    path = tmp_path / "small"
    path.write_bytes(b"x" * 100)
    digest = FileDigest(str(path))
    assert digest.done and digest.fd == -1  # closed already: nothing left to read


def test_big_files_of_a_batch_hash_on_threads_in_order(tmp_path):
    blobs = [os.urandom(n) for n in (2 * CHUNK + 5, 10, 3 * CHUNK, 0, CHUNK + 1)]
    items = []
    for i, blob in enumerate(blobs):
        path = tmp_path / f"f{i}"
        path.write_bytes(blob)
        items.append({"path": str(path)})
    items.insert(2, {"path": str(tmp_path / "missing")})
    rows = run_batch(Work("hash"), items)
    assert [r["path"] for r in rows] == [i["path"] for i in items]
    assert rows[2]["status"] == "missing"
    got = [(r["digest"], r["bytes"]) for r in rows if r["status"] == "ok"]
    assert got == [(hashlib.sha256(b).hexdigest(), len(b)) for b in blobs]


def test_check_rows_say_failed_for_a_changed_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(2 * CHUNK))
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    rows = run_batch(
        Work("check"),
        [
            {"path": str(path), "digest": good, "line": 1},
            {"path": str(path), "digest": "0" * 64, "line": 2},
        ],
    )
    assert [(r["status"], r["line"]) for r in rows] == [("ok", 1), ("failed", 2)]
    assert rows[1]["expected"] == "0" * 64 and rows[1]["digest"] == good


def test_digest_fd_hashes_what_is_left(tmp_path):
    data = os.urandom(CHUNK + 3)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 3, os.SEEK_SET)
        assert digest_fd(fd) == (hashlib.sha256(data[3:]).hexdigest(), CHUNK)
    finally:
        os.close(fd)
