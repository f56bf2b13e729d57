"""Batches on the wire: items and rows come back exactly as they went, whatever their
keys and paths."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmp_tasks.wire import pack, pack_items, pack_rows, unpack_items, unpack_rows

EXAMPLES = int(os.environ.get("DMP_PROPERTY_EXAMPLES", "300"))

# Paths as workers see them: any bytes but NUL, decoded as Python decodes file names.
paths = st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b).map(os.fsdecode)
values = st.one_of(st.none(), st.booleans(), st.integers(), paths)
records = st.dictionaries(st.sampled_from(["path", "status", "digest", "bytes", "error"]), values)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(records, max_size=20))
def test_records_round_trip_in_order(batch: list[dict[str, object]]) -> None:
    text = pack_items(batch)  # type: ignore[arg-type]
    assert unpack_items(text) == batch
    assert unpack_items(text.encode()) == batch  # as Redis hands it back


def test_keys_keep_their_order() -> None:
    rows = [{"path": i, "status": "ok", "bytes": 4096} for i in range(3)]
    rows.append({"status": "missing", "path": 3, "error": "No such file or directory"})
    back = unpack_items(pack_items(rows))  # type: ignore[arg-type]
    assert [list(row) for row in back] == [list(row) for row in rows]


def test_a_path_that_is_not_utf8_survives() -> None:
    path = os.fsdecode(b"caf\xe9/\xff\xfe")
    for items in ([{"path": path}], [{"path": path, "size": 1}]):  # both forms
        text = pack_items(items)  # type: ignore[arg-type]
        text.encode("utf-8")  # it can go to Redis as it is
        assert unpack_items(text) == items


def test_it_is_plain_compact_json() -> None:
    plain = [{"path": "a", "size": 1}, {"path": "b"}]
    assert pack(plain) == '[{"path":"a","size":1},{"path":"b"}]'
    assert unpack_items(json.dumps(plain)) == plain


def _hashed_row(path: str, n: int) -> dict[str, object]:
    return {"path": path, "status": "ok", "digest": f"{n:064x}", "bytes": n}


def test_files_hashed_well_go_as_one_string_and_come_back_exactly() -> None:
    paths = ["a", "b c:d", os.fsdecode(b"\xff\n")]
    rows = [_hashed_row(path, n) for n, path in enumerate(paths)]
    expected = [dict(row) for row in rows]
    text = pack_rows(rows, [{"path": path} for path in paths])  # type: ignore[arg-type]
    assert text == '{"hashed":"' + " ".join(f"{n:064x}:{n}" for n in range(3)) + '"}'
    back = unpack_rows(text.encode(), paths)  # as Redis hands it back
    assert back == expected
    assert [list(row) for row in back] == [list(row) for row in expected]  # key order kept


@pytest.mark.parametrize(
    "odd",
    [
        {"path": "x", "status": "missing", "bytes": 0, "error": "No such file or directory"},
        {**_hashed_row("x", 7), "stat": ["file", 420, 0, 7, 0, 0]},  # with --meta
        _hashed_row("elsewhere", 7),  # not the item's path
        {"path": "x", "digest": f"{7:064x}", "status": "ok", "bytes": 7},  # keys reordered
        {**_hashed_row("x", 7), "digest": "not hex: spaced"},
    ],
)
def test_any_other_row_sends_its_batch_as_records(odd: dict[str, object]) -> None:
    rows = [_hashed_row("a", 1), odd]
    expected = [dict(row) for row in rows]
    paths = ["a", "x"]
    text = pack_rows(rows, [{"path": path} for path in paths])  # type: ignore[arg-type]
    assert text.startswith("[")
    back = unpack_rows(text, paths)
    assert back == expected
    assert [list(row) for row in back] == [list(row) for row in expected]


hashed_rows = st.builds(
    lambda path, n, ok: _hashed_row(path, n) if ok else {"path": path, "status": "error"},
    paths,
    st.integers(min_value=0, max_value=2**40),
    st.booleans(),
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(hashed_rows, min_size=1, max_size=20))
def test_rows_round_trip_whatever_the_mix(rows: list[dict[str, object]]) -> None:
    expected = [dict(row) for row in rows]
    paths_sent = [str(row["path"]) for row in rows]
    text = pack_rows(rows, [{"path": path} for path in paths_sent])  # type: ignore[arg-type]
    assert unpack_rows(text, paths_sent) == expected


def test_bare_paths_go_as_their_directories_and_names() -> None:
    items = [{"path": p} for p in ("t/d0/a", "t/d0/b", "t/d1/a", "top", "/abs/x", "t/d0/c")]
    text = pack_items(items)  # type: ignore[arg-type]
    assert json.loads(text) == {
        "dirs": ["t/d0/", ["a", "b"], "t/d1/", ["a"], "", ["top"], "/abs/", ["x"], "t/d0/", ["c"]]
    }
    assert unpack_items(text.encode()) == items  # in order, as Redis hands it back


@pytest.mark.parametrize(
    "other",
    [
        {"path": "a", "size": 1},  # a size known
        {"path": "a", "digest": "00", "line": 3},  # --check
        {"path": "a", "problem": "Permission denied"},
        {"digest": "00", "bad": True},  # an improperly formatted line: no path
    ],
)
def test_any_other_item_sends_its_batch_as_records(other: dict[str, object]) -> None:
    items = [{"path": "d/a"}, other]
    text = pack_items(items)  # type: ignore[list-item]
    assert text == pack(items)
    assert unpack_items(text) == items


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.one_of(paths, st.sampled_from(["", "/", "a/", "//b", "a/b/"])), max_size=30))
def test_bare_paths_round_trip_whatever_they_hold(names: list[str]) -> None:
    items = [{"path": name} for name in names]
    assert unpack_items(pack_items(items)) == items  # type: ignore[arg-type]


def test_work_in_this_protocol_is_taken_and_any_other_refused_saying_why() -> None:
    from dmp_cli import __version__
    from dmp_tasks.wire import PROTOCOL, mismatch, speaks

    assert mismatch(speaks()) is None
    assert mismatch({"stores": None, **speaks()}) is None
    other = mismatch({"protocol": PROTOCOL + 1, "dmp": "9.9"})
    assert other == (
        f"this worker runs dmp {__version__} (protocol {PROTOCOL}) and the command dmp 9.9 "
        f"(protocol {PROTOCOL + 1}): run the same version of dmp on the workers and where "
        "commands are run"
    )
    older = mismatch({"stores": None, "options": None}, "the job's submitter")
    assert older is not None and "and the job's submitter an older dmp:" in older
