"""A vault's config object (``vault.json``, ``dmp_cli.packs.config``), read from its store.

A vault without one is the plain layout, one object per checksum; with one, it packs small
files. What the config says is the pure ``VaultConfig``; here, only where it comes from.
"""

from __future__ import annotations

from dmp_cli.packs.config import CONFIG_KEY, VaultConfig, parse_config
from dmp_cli.store import Store


def read_config(store: Store) -> VaultConfig | None:
    """The vault's config, or None if it has none (a plain vault). Raise VaultConfigError,
    one line naming the object's address, if it is not a config this dmp reads; and
    StoreError if the store cannot be read."""
    data = store.get_bytes(CONFIG_KEY)
    if data is None:
        return None
    return parse_config(data, store.key_url(CONFIG_KEY))
