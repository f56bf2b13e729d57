"""Batches on the wire: items and rows come back exactly as they went, whatever their
keys and paths."""

from __future__ import annotations

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from dmp_tasks.wire import pack, unpack

EXAMPLES = int(os.environ.get("DMP_PROPERTY_EXAMPLES", "300"))

# Paths as workers see them: any bytes but NUL, decoded as Python decodes file names.
paths = st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b).map(os.fsdecode)
values = st.one_of(st.none(), st.booleans(), st.integers(), paths)
records = st.dictionaries(st.sampled_from(["path", "status", "digest", "bytes", "error"]), values)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(records, max_size=20))
def test_records_round_trip_in_order(batch: list[dict[str, object]]) -> None:
    text = pack(batch)
    assert unpack(text) == batch
    assert unpack(text.encode()) == batch  # as Redis hands it back


def test_keys_keep_their_order() -> None:
    rows = [{"path": i, "status": "ok", "bytes": 4096} for i in range(3)]
    rows.append({"status": "missing", "path": 3, "error": "No such file or directory"})
    assert [list(row) for row in unpack(pack(rows))] == [list(row) for row in rows]


def test_a_path_that_is_not_utf8_survives() -> None:
    path = os.fsdecode(b"caf\xe9/\xff\xfe")
    text = pack([{"path": path}])
    text.encode("utf-8")  # it can go to Redis as it is
    assert unpack(text) == [{"path": path}]


def test_it_is_plain_compact_json() -> None:
    plain = [{"path": "a", "size": 1}, {"path": "b"}]
    assert pack(plain) == '[{"path":"a","size":1},{"path":"b"}]'
    assert unpack(json.dumps(plain)) == plain
