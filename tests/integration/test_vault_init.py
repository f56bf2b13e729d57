"""`dmp vault init`: a packing vault's config written, refused over a config or objects
already there unless --force, and its sizes read; for a file:// vault and against moto's
S3 server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from dmp_cli.layout import digest_key
from dmp_cli.packs.config import CONFIG_KEY, DEFAULT_PACK_BELOW, DEFAULT_PACK_TARGET, VaultConfig
from dmp_cli.store import Store
from dmp_cli.store.config import read_config
from dmp_cli.store.local import FileStore
from dmp_cli.store.s3 import S3Store
from tests.integration.vaultkit import dmp, one_error, sha
from tests.servers import Service, dmp_env, moto_client

pytestmark = pytest.mark.integration
KiB, MiB = 1 << 10, 1 << 20


@dataclass
class Vault:
    url: str
    env: dict[str, str]
    store: Store  # the tests' own hands on it, beside what dmp does
    cwd: Path

    def init(self, *args: str, subprocess: bool = False) -> CompletedProcess[bytes]:
        return dmp("vault", "init", *args, cwd=self.cwd, env=self.env, subprocess=subprocess)

    def config_bytes(self) -> bytes | None:
        return self.store.get_bytes(CONFIG_KEY)


@pytest.fixture(params=["file", "s3"])
def vault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Vault]:
    if request.param == "file":
        root = tmp_path / "vault"
        root.mkdir()
        url = f"file://{root}"
        yield Vault(url, dmp_env(DMP_VAULT=url), FileStore(str(root)), tmp_path)
        return
    server: Service = request.getfixturevalue("s3_server")
    s3 = moto_client(server.url)
    bucket = f"dmp-{uuid.uuid4().hex[:16]}"  # one per test: tests never see each other
    s3.create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/object"
    env = dmp_env(AWS_ENDPOINT_URL=server.url, DMP_VAULT=url)
    try:
        yield Vault(url, env, S3Store(s3, bucket, "object"), tmp_path)
    finally:
        s3.close()


def test_init_writes_a_config_read_back(vault: Vault) -> None:
    result = vault.init()
    assert (result.returncode, result.stdout) == (0, b""), result.stderr
    assert result.stderr.decode() == (
        f"dmp: wrote {vault.url}/{CONFIG_KEY}: a packing vault, "
        "pack below 1.0 MiB, pack target 64.0 MiB\n"
    )
    assert read_config(vault.store) == VaultConfig(DEFAULT_PACK_BELOW, DEFAULT_PACK_TARGET)


@pytest.mark.parametrize(
    ("below", "target", "config"),
    [
        ("512KiB", "128MiB", VaultConfig(512 * KiB, 128 * MiB)),
        ("4096", "33554432", VaultConfig(4096, 32 * MiB)),
        ("16 MiB", "1GiB", VaultConfig(16 * MiB, 1 << 30)),
    ],
    ids=["units", "bytes", "spaced"],
)
def test_init_with_sizes(vault: Vault, below: str, target: str, config: VaultConfig) -> None:
    result = vault.init("--pack-below", below, "--pack-target", target)
    assert result.returncode == 0, result.stderr
    assert read_config(vault.store) == config


def test_a_second_init_is_refused_and_changes_nothing(vault: Vault) -> None:
    assert vault.init("--pack-below", "256KiB").returncode == 0
    before = vault.config_bytes()
    again = vault.init("--pack-below", "64KiB", "--pack-target", "256MiB")
    one_error(
        again,
        2,
        f"{vault.url} already has a config (vault.json): pack below 256.0 KiB, "
        "pack target 64.0 MiB; --force to replace it",
    )
    assert vault.config_bytes() == before


def test_force_replaces_the_config(vault: Vault) -> None:
    assert vault.init().returncode == 0
    result = vault.init("--force", "--pack-below", "64KiB", "--pack-target", "256MiB")
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().startswith(f"dmp: replaced {vault.url}/{CONFIG_KEY}: ")
    assert read_config(vault.store) == VaultConfig(64 * KiB, 256 * MiB)


def test_a_config_it_cannot_read_is_refused_unless_forced(vault: Vault) -> None:
    vault.store.put_bytes(CONFIG_KEY, b'{"format": "dmp-vault", "version": 9}\n')
    one_error(vault.init(), 2, "already has a config (vault.json): not one this dmp reads")
    assert vault.init("--force").returncode == 0
    assert read_config(vault.store) == VaultConfig()


def test_a_vault_holding_objects_is_refused_unless_forced(vault: Vault) -> None:
    vault.store.put_bytes(digest_key(sha(b"alpha\n")), b"alpha\n")
    one_error(
        vault.init(),
        2,
        f"{vault.url} already holds objects; --force to make it a packing vault anyway",
    )
    assert vault.config_bytes() is None
    assert vault.init("--force").returncode == 0
    assert read_config(vault.store) == VaultConfig()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--pack-below", "1MB"), "Invalid value for '--pack-below': '1MB' is not a size"),
        (("--pack-target", "lots"), "Invalid value for '--pack-target': 'lots' is not a size"),
        (("--pack-below", "-5"), "Invalid value for '--pack-below': '-5' is not a size"),
        (("--pack-below", "1.5MiB"), "'1.5MiB' is not a size"),
        (
            ("--pack-target", "16MiB"),
            "--pack-target 16.0 MiB: pack_target 16777216 is outside 33554432..2147483648",
        ),
        (("--pack-target", "3GiB"), "pack_target 3221225472 is outside"),
        (("--pack-below", "33MiB"), "pack_below 34603008 is outside 1..33554432"),
        (("--pack-below", "0"), "pack_below 0 is outside"),
    ],
    ids=[
        "decimal-unit",
        "word",
        "negative",
        "fraction",
        "target-small",
        "target-big",
        "below-big",
        "below-zero",
    ],
)
def test_bad_sizes_are_a_usage_error(vault: Vault, args: tuple[str, ...], said: str) -> None:
    one_error(vault.init(*args), 2, said)
    assert vault.config_bytes() is None


def test_json_summary(vault: Vault) -> None:
    result = dmp("--json", "vault", "init", cwd=vault.cwd, env=vault.env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "type": "summary",
        "vault": vault.url,
        "config": f"{vault.url}/{CONFIG_KEY}",
        "pack_below": DEFAULT_PACK_BELOW,
        "pack_target": DEFAULT_PACK_TARGET,
        "index_width": 1,
        "replaced": False,
    }


def test_help_says_what_a_packing_vault_is(tmp_path: Path) -> None:
    result = dmp("vault", "init", "--help", cwd=tmp_path, env=dmp_env())
    text = " ".join(result.stdout.decode().split())
    assert result.returncode == 0
    assert "files smaller than --pack-below are gathered into tar packs" in text
    assert "the other files stay one object per checksum" in text
    assert "A vault without a config works as it always has" in text


def test_a_missing_directory_vault(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/absent"
    one_error(
        dmp("vault", "init", cwd=tmp_path, env=dmp_env(DMP_VAULT=url)), 1, "no such directory"
    )


def test_a_missing_bucket(s3_server: Service, tmp_path: Path) -> None:
    env = dmp_env(AWS_ENDPOINT_URL=s3_server.url, DMP_VAULT="s3://dmp-absent-bucket/object")
    one_error(
        dmp("vault", "init", cwd=tmp_path, env=env), 1, "s3://dmp-absent-bucket: no such bucket"
    )


def test_in_a_process_of_its_own(vault: Vault) -> None:
    result = vault.init("--pack-target", "32MiB", subprocess=True)
    assert result.returncode == 0, result.stderr
    assert read_config(vault.store) == VaultConfig(DEFAULT_PACK_BELOW, 32 * MiB)
