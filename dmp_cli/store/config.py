"""A vault's config object (``vault.json``, ``dmp_cli.packs.config``), read from its store.

A vault without one is the plain layout, one object per checksum; with one, it packs small
files. What the config says is the pure ``VaultConfig``; here, reading it from the store
(``read_config``) and writing it there once (``init_config``, for `dmp vault init`).
"""

from __future__ import annotations

from dmp_cli.errors import UsageError
from dmp_cli.packs.config import CONFIG_KEY, VaultConfig, VaultConfigError, parse_config
from dmp_cli.retry import with_retries
from dmp_cli.store import Store
from dmp_cli.words import human_bytes


def read_config(store: Store) -> VaultConfig | None:
    """The vault's config, or None if it has none (a plain vault). Raise VaultConfigError,
    one line naming the object's address, if it is not a config this dmp reads; and
    StoreError if the store cannot be read."""
    data = store.get_bytes(CONFIG_KEY)
    if data is None:
        return None
    return parse_config(data, store.key_url(CONFIG_KEY))


def init_config(store: Store, config: VaultConfig, force: bool = False) -> bool:
    """Make the vault a packing vault: write ``config`` as its config object. Unless
    ``force``, a vault that already has a config, or already holds any object (one key
    listed is enough), is refused with a UsageError and left as it was: its files were
    stored by other rules. Whether a config was there (and replaced)."""
    there = with_retries(lambda: store.get_bytes(CONFIG_KEY))
    if there is not None and not force:
        try:
            said = described(parse_config(there, store.key_url(CONFIG_KEY)))
        except VaultConfigError:
            said = "not one this dmp reads"
        raise UsageError(
            f"{store.url} already has a config ({CONFIG_KEY}): {said}; --force to replace it"
        )
    if there is None and not force and with_retries(lambda: _holds_objects(store)):
        raise UsageError(
            f"{store.url} already holds objects; --force to make it a packing vault anyway"
        )
    with_retries(lambda: store.put_bytes(CONFIG_KEY, config.encode()))
    return there is not None


def described(config: VaultConfig) -> str:
    """``pack below 1.0 MiB, pack target 64.0 MiB`` (``, storage class GLACIER`` if set)."""
    below, target = human_bytes(config.pack_below), human_bytes(config.pack_target)
    stored = f", storage class {config.storage_class}" if config.storage_class else ""
    return f"pack below {below}, pack target {target}{stored}"


def _holds_objects(store: Store) -> bool:
    return next(iter(store.list_keys("")), None) is not None
