"""A packing vault's config object, and the names of packs and index objects, which no
checksum's key can ever be."""

from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmp_cli.layout import digest_key
from dmp_cli.packs.config import (
    CONFIG_KEY,
    DEFAULT_PACK_BELOW,
    DEFAULT_PACK_TARGET,
    MIN_PACK_TARGET,
    VaultConfig,
    VaultConfigError,
    index_key,
    index_prefix,
    merged_index_key,
    pack_key,
    parse_config,
    parse_index_key,
    parse_pack_key,
)

NAME = "s3://bucket/vault/vault.json"
digests = st.binary(min_size=32, max_size=32).map(bytes.hex)
CHECKSUM_KEY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{4}/[0-9a-f]{8}/[0-9a-f]{48}\Z")


def test_the_defaults_round_trip() -> None:
    config = VaultConfig()
    assert (config.pack_below, config.pack_target, config.index_width) == (1 << 20, 64 << 20, 1)
    assert json.loads(config.encode()) == {
        "format": "dmp-vault",
        "version": 1,
        "pack_below": DEFAULT_PACK_BELOW,
        "pack_target": DEFAULT_PACK_TARGET,
        "index_width": 1,
    }
    assert parse_config(config.encode(), NAME) == config
    other = VaultConfig(pack_below=4096, pack_target=MIN_PACK_TARGET, index_width=2)
    assert parse_config(other.encode(), NAME) == other


def test_files_strictly_below_the_threshold_are_packed() -> None:
    config = VaultConfig(pack_below=100)
    assert [config.packs(n) for n in (0, 1, 99, 100, 101)] == [True, True, True, False, False]


def test_shards() -> None:
    assert VaultConfig().shards() == list("0123456789abcdef")
    assert VaultConfig(index_width=2).shards()[:3] == ["00", "01", "02"]
    assert len(VaultConfig(index_width=2).shards()) == 256
    assert VaultConfig().shard("ab" * 32) == "a"


def _fields(**changes: object) -> bytes:
    fields = json.loads(VaultConfig().encode())
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not a dmp vault config (unreadable JSON: "),
        (b"\xff\xfe", "not a dmp vault config (unreadable JSON: "),
        (b"[1, 2]", 'not a dmp vault config (no "format": "dmp-vault")'),
        (_fields(format="restic"), 'not a dmp vault config (no "format": "dmp-vault")'),
        (_fields(version=2), "vault config version 2 is not one this dmp knows"),
        (_fields(version="1"), 'vault config version "1" is not one this dmp knows'),
        (_fields(version=True), "vault config version true is not one this dmp knows"),
        (_fields(storage="glacier"), "vault config has unknown fields: storage"),
        (_fields(pack_below="1M"), 'bad vault config: pack_below is "1M", not a whole number'),
        (_fields(pack_below=0), "bad vault config: pack_below 0 is outside 1..33554432 bytes"),
        (
            _fields(pack_below=(32 << 20) + 1),
            "bad vault config: pack_below 33554433 is outside 1..33554432 bytes (half of pack_",
        ),
        (_fields(pack_target=1 << 20), "bad vault config: pack_target 1048576 is outside"),
        (_fields(pack_target=3 << 30), "bad vault config: pack_target 3221225472 is outside"),
        (_fields(pack_target=64.5), "bad vault config: pack_target is 64.5, not a whole number"),
        (_fields(index_width=3), "bad vault config: index_width 3 is not one of 1, 2"),
    ],
    ids=[
        "json",
        "utf8",
        "array",
        "format",
        "version",
        "version-str",
        "version-bool",
        "unknown",
        "below-str",
        "below-zero",
        "below-over-half-target",
        "target-small",
        "target-big",
        "target-float",
        "width",
    ],
)
def test_a_bad_config_is_one_line_naming_the_object(data: bytes, message: str) -> None:
    with pytest.raises(VaultConfigError) as caught:
        parse_config(data, NAME)
    text = str(caught.value)
    assert text.startswith(f"{NAME}: {message}"), text
    assert "\n" not in text


def test_missing_fields_take_their_defaults() -> None:
    assert parse_config(b'{"format": "dmp-vault", "version": 1}', NAME) == VaultConfig()


def test_a_bad_config_cannot_be_made_either() -> None:
    with pytest.raises(ValueError, match="pack_target"):
        VaultConfig(pack_target=1 << 20)


@given(digests, digests)
def test_no_checksum_key_is_ever_one_of_the_names(checksum: str, other: str) -> None:
    key = digest_key(checksum)
    assert CHECKSUM_KEY.match(key)
    names = [CONFIG_KEY, pack_key(other), index_key(other[0], other), index_prefix(other[:2])]
    names.append(merged_index_key(other[:2], other))
    for name in names:
        assert not CHECKSUM_KEY.match(name)
        # not even a listing of a checksum key's prefix ("c", "ab/") meets one of them
        assert name[0] not in string.hexdigits
        assert not name.startswith(key[: len(name)])
        assert key != name


def test_the_names_parse_back() -> None:
    pack = "0123456789abcdef" * 4
    assert pack_key(pack) == f"packs/{pack}.tar"
    assert parse_pack_key(pack_key(pack)) == pack
    assert parse_pack_key(digest_key(pack)) is None
    assert parse_pack_key(f"packs/{pack}.tar.tmp") is None
    name = parse_index_key(index_key("0", pack))
    assert name is not None and (name.shard, name.merged, name.digest) == ("0", False, pack)
    assert index_key("0", pack) == f"index/0/pack-{pack}.idx"
    assert index_key("0", pack).startswith(index_prefix("0"))
    merged = parse_index_key(merged_index_key("ab", pack))
    assert merged is not None and (merged.shard, merged.merged) == ("ab", True)
    assert parse_index_key(digest_key(pack)) is None
    assert parse_index_key(f"index/abc/pack-{pack}.idx") is None


@pytest.mark.parametrize("shard", ["", "abc", "A", "g"], ids=["empty", "long", "upper", "nothex"])
def test_a_name_is_never_made_from_a_bad_shard(shard: str) -> None:
    with pytest.raises(ValueError):
        index_key(shard, "0" * 64)


def test_a_name_is_never_made_from_a_bad_digest() -> None:
    with pytest.raises(ValueError):
        pack_key("0" * 63)
    with pytest.raises(ValueError):
        merged_index_key("0", "A" * 64)
