"""--archive's storage class: its name, where it comes from (--storage-class,
DMP_STORAGE_CLASS, the vault config, in that order), the vault config's field, and what
the stores do with it (S3 on moto's in-process mock; a directory ignores it)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from s3transfer.manager import TransferConfig

from dmp_cli.errors import FatalStoreError, UsageError
from dmp_cli.options import Options, StoreSpec, Work
from dmp_cli.packs.config import VaultConfig, VaultConfigError, parse_config
from dmp_cli.rules import Command
from dmp_cli.runs.transfers import _storage_class, transfer_stores
from dmp_cli.settings import Settings, storage_class_name
from dmp_cli.store.local import FileStore
from dmp_cli.store.s3 import S3Store, client_error

MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("GLACIER", "GLACIER"),
        ("glacier_ir", "GLACIER_IR"),
        (" deep_archive ", "DEEP_ARCHIVE"),
        ("Site_Cold_2", "SITE_COLD_2"),  # a store's own: passed through, not checked
        ("", None),
        (None, None),
    ],
    ids=["upper", "lower", "spaces", "a-site-s-own", "empty", "unset"],
)
def test_a_name_is_upper_cased_and_passed_through(given: str | None, name: str | None) -> None:
    assert storage_class_name(given) == name


@pytest.mark.parametrize("given", ["GLACIER-IR", "deep archive", "STANDARD;", "ÉTÉ"])
def test_a_name_that_is_not_letters_digits_and_underscores_is_a_usage_error(given: str) -> None:
    with pytest.raises(UsageError, match=r"^--storage-class must be a storage class name") as got:
        storage_class_name(given)
    assert got.value.exit_code == 2


def test_the_setting_is_read_and_named_when_bad(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMP_STORAGE_CLASS", "standard_ia")
    assert Settings.from_env().storage_class == "STANDARD_IA"
    monkeypatch.setenv("DMP_STORAGE_CLASS", "not a class")
    with pytest.raises(UsageError, match=r"^DMP_STORAGE_CLASS must be a storage class name"):
        Settings.from_env()
    monkeypatch.delenv("DMP_STORAGE_CLASS")
    assert Settings.from_env().storage_class is None


def test_options_validate_the_name_and_carry_it_to_workers() -> None:
    assert Options(storage_class="glacier").validated().storage_class == "GLACIER"
    with pytest.raises(UsageError):
        Options(storage_class="GLACIER IR").validated()
    work = Work.of("upload", None, Options(storage_class="DEEP_ARCHIVE"))
    assert work.opts().storage_class == "DEEP_ARCHIVE"


# ---------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("option", "setting", "config", "expected"),
    [
        ("ONEZONE_IA", "STANDARD_IA", "GLACIER_IR", "ONEZONE_IA"),
        (None, "STANDARD_IA", "GLACIER_IR", "STANDARD_IA"),
        (None, None, "GLACIER_IR", "GLACIER_IR"),
        (None, None, None, None),
        ("GLACIER", None, None, "GLACIER"),
    ],
    ids=["option-first", "then-setting", "then-config", "none", "option-alone"],
)
def test_precedence(
    option: str | None, setting: str | None, config: str | None, expected: str | None
) -> None:
    settings = Settings(vault="s3://v/o", storage_class=setting)
    spec, options = transfer_stores(Command.ARCHIVE, settings, Options(storage_class=option))
    vault_config = VaultConfig(storage_class=config) if config else VaultConfig()
    assert _storage_class(options, vault_config, spec, None).storage_class == expected


def test_only_archive_takes_the_setting() -> None:
    settings = Settings(vault="s3://v/o", storage_class="GLACIER")
    for command in (Command.VAULT, Command.FETCH):
        assert transfer_stores(command, settings, Options())[1].storage_class is None


def test_a_directory_vault_ignores_the_class_and_says_so() -> None:
    said: list[str] = []
    spec = StoreSpec("file:///srv/vault")
    options = _storage_class(Options(storage_class="GLACIER"), None, spec, said.append)
    assert options.storage_class is None
    assert said == [
        "storage class GLACIER ignored: file:///srv/vault is a directory, "
        "which has no storage classes"
    ]
    assert _storage_class(Options(), None, spec, said.append).storage_class is None
    assert len(said) == 1  # nothing to say without a class


# ---------------------------------------------------------------- the vault config


def test_a_config_without_a_class_writes_none_and_older_configs_read() -> None:
    encoded = json.loads(VaultConfig().encode())
    assert "storage_class" not in encoded
    assert parse_config(VaultConfig().encode(), "vault.json").storage_class is None


def test_a_config_with_a_class_round_trips() -> None:
    config = VaultConfig(storage_class="DEEP_ARCHIVE")
    assert json.loads(config.encode())["storage_class"] == "DEEP_ARCHIVE"
    assert parse_config(config.encode(), "vault.json") == config


@pytest.mark.parametrize(
    "value", ["", "glacier", "GLACIER IR", 3, None], ids=["empty", "lower", "space", "int", "null"]
)
def test_a_config_with_a_bad_class_is_one_line(value: object) -> None:
    data = json.dumps({"format": "dmp-vault", "version": 1, "storage_class": value}).encode()
    with pytest.raises(VaultConfigError, match=r"^s3://v/vault.json: bad vault config: storage_cl"):
        parse_config(data, "s3://v/vault.json")
    if value is not None:  # null in the JSON is refused; None in Python is no class
        with pytest.raises(ValueError):
            VaultConfig(storage_class=value)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the stores


def _class(client: object, key: str) -> str:
    head = client.head_object(Bucket="vault", Key=key)  # type: ignore[attr-defined]
    return str(head.get("StorageClass", "STANDARD"))


@pytest.mark.parametrize("size", [1000, 6 * MiB], ids=["one-put", "multipart"])
def test_s3_puts_content_in_the_class_and_small_objects_in_the_default(
    s3: object, tmp_path: Path, size: int
) -> None:
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    store = S3Store(s3, "vault", "o", parts)
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    store.put_file("a", str(path), sha(data), size, None, True, "GLACIER_IR")
    store.put_file("b", str(path), sha(data), size)
    store.put_bytes("c", b"an index")
    store.copy(store, "b", "d", sha(data), "DEEP_ARCHIVE")
    store.copy(store, "b", "e", sha(data))
    got = {key: _class(s3, f"o/{key}") for key in "abcde"}
    assert got == {
        "a": "GLACIER_IR",
        "b": "STANDARD",
        "c": "STANDARD",
        "d": "DEEP_ARCHIVE",
        "e": "STANDARD",
    }
    store.close()


def test_a_refused_class_is_fatal_in_the_store_s_words() -> None:
    refused = ClientError(
        {
            "Error": {
                "Code": "InvalidStorageClass",
                "Message": "The storage class you specified is not valid",
            },
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "PutObject",
    )
    error = client_error(refused, "s3://vault/o/ab/cd")
    assert isinstance(error, FatalStoreError) and not error.transient
    assert str(error) == (
        "s3://vault/o/ab/cd: InvalidStorageClass: The storage class you specified is not valid"
    )


def test_a_directory_takes_a_class_and_ignores_it(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "vault"))
    data = b"content"
    path = tmp_path / "f"
    path.write_bytes(data)
    assert store.put_file("ab/cd", str(path), sha(data), len(data), None, True, "GLACIER") == 7
    store.copy(store, "ab/cd", "ef/gh", sha(data), "GLACIER")
    assert (tmp_path / "vault" / "ef" / "gh").read_bytes() == data
