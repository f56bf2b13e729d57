"""Put-if-absent against stores that honour If-None-Match, ignore it (and overwrite), or
refuse it (501): a rerun of --archive uploads nothing, whatever the store does, unless
DMP_CONDITIONAL_PUT=on says to take the store's word. (That the setting reaches the
workers is seen in test_s3_faults.py: its fleet runs with it off.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dmp_cli.layout import digest_key
from dmp_cli.store.s3 import PROBE_NAME
from tests.integration.fleet import Vault, fleet_env, new_vault
from tests.integration.s3proxy import FaultProxy, fault_proxy
from tests.integration.vaultkit import make_tree, one_error, sha, small_tree
from tests.servers import Service, run_dmp

pytestmark = pytest.mark.integration

FILES = small_tree(20, seed=5)  # 15 contents, 5 copies
DISTINCT = len({sha(data) for data in FILES.values()})


def archive(
    work: Path, vault: Vault, proxy: FaultProxy, broker: str | None = None, **env: str
) -> Any:
    env = fleet_env(broker, DMP_VAULT=vault.url, AWS_ENDPOINT_URL=proxy.url, **env)
    result = run_dmp(
        "--json",
        "manifest",
        "--archive",
        "-m",
        "manifest.sha256",
        cwd=work,
        env=env,
        subprocess=broker is not None,
    )
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr.decode()
    return json.loads(result.stdout.splitlines()[-1])


def vault_puts(proxy: FaultProxy) -> int:
    """PUTs of the vault's objects that reached the store (not the probe's)."""
    return sum(n for path, n in proxy.counts.puts.items() if PROBE_NAME not in path)


def stored_right(vault: Vault) -> None:
    stored = vault.objects()
    assert {key: digest_key(sha(data)) for key, data in stored.items()} == {
        key: key for key in stored
    }
    assert set(stored) == {digest_key(sha(d)) for d in FILES.values()}  # no probe left


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    make_tree(work, FILES)
    return work


@pytest.mark.parametrize(
    ("store", "setting", "puts_again", "uploaded_again"),
    [
        ("overwrite", "auto", 0, 0),  # the probe sees the overwrite: HEAD first
        ("honour", "auto", DISTINCT, 0),  # conditional PUTs, each refused (412)
        ("refuse", "auto", 0, 0),  # 501 to the probe: HEAD first
        ("overwrite", "off", 0, 0),
        # Forced on, the store's word is taken: every object is sent again and overwritten
        # (with the same bytes: content-addressed, nothing is lost but the bandwidth).
        ("overwrite", "on", DISTINCT, DISTINCT),
    ],
    ids=[
        "overwrite-auto",
        "honour-auto",
        "refuse-auto",
        "overwrite-off",
        "overwrite-on",
    ],
)
def test_rerun_uploads_nothing_whatever_the_store(
    s3_server: Service,
    tmp_path: Path,
    tree: Path,
    store: str,
    setting: str,
    puts_again: int,
    uploaded_again: int,
) -> None:
    vault = new_vault("s3", tmp_path, s3_server.url)
    # Each checksum is offered to the store (planning by listing, which a vault this
    # small gets, would send none of them on the rerun: test_vault_planning.py).
    per_checksum = {"DMP_CONDITIONAL_PUT": setting, "DMP_VAULT_PLANNING": "head"}
    with fault_proxy(s3_server.url, conditional=store) as proxy:
        first = archive(tree, vault, proxy, **per_checksum)
        assert (first["uploaded"], first["skipped"], first["failed"]) == (DISTINCT, 5, 0)
        assert vault_puts(proxy) == DISTINCT
        proxy.reset()
        again = archive(tree, vault, proxy, **per_checksum)
        print(json.dumps({"store": store, "setting": setting, **proxy.counts.figures()}))
        assert (again["uploaded"], again["failed"]) == (uploaded_again, 0)
        assert again["skipped"] == len(FILES) - uploaded_again
        assert vault_puts(proxy) == puts_again
    stored_right(vault)


@pytest.mark.parametrize("broker", [False, True], ids=["embedded", "fleet"])
def test_a_bad_setting_is_a_usage_error(tree: Path, redis: Service, broker: bool) -> None:
    env = fleet_env(
        redis.url if broker else None, DMP_CONDITIONAL_PUT="sometimes", DMP_VAULT="s3://b/o"
    )
    result = run_dmp(
        "manifest", "--archive", "-m", "manifest.sha256", cwd=tree, env=env, subprocess=broker
    )
    one_error(result, 2, "DMP_CONDITIONAL_PUT must be auto, on or off, not 'sometimes'")
