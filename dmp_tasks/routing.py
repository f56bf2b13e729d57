"""Which queue a batch goes to, and how big batches are for the fleet."""

from __future__ import annotations

import os

from dmp_cli.ops import Item, kind_of
from dmp_tasks.config import BIG_QUEUE, HASH_QUEUE, TRANSFER_QUEUE

# A file this big goes alone to the big-file queue, where workers take one at a time
# (DMP_BIG_FILE_BYTES changes it: a site whose files are all big may want it higher).
BIG_FILE_BYTES = 1 << 30


def big_file_bytes() -> int:
    env = os.environ.get("DMP_BIG_FILE_BYTES")
    return max(1, int(env)) if env else BIG_FILE_BYTES


# A task carries a batch: one message a file runs at ~450 items/s, batches at tens of
# thousands (measured on one node). Each task costs the fleet a few milliseconds of CPU
# whatever its size (a worker's main process alone spends about 3.5 ms on one: taking it,
# keeping it unacknowledged, its events, its acknowledgement), so small files go 8192 to a
# batch: against 4096, that took a tenth off the fleet's CPU for 100,000 small files, as
# 1024 to 4096 had taken 15 % off its time (the window of files in flight grew with it,
# so as many batches are in flight as before). A job's first batch is smaller, so that
# workers start early, and batches double from there; until some have finished, the
# files' sizes are unknown (a walk or a manifest does not stat), so they grow no further
# than BLIND_BATCH_ITEMS, as they may hold huge files. Network work gets smaller batches,
# as each file waits on S3 rather than on a CPU.
CPU_BATCH_ITEMS = 8192
FIRST_BATCH_ITEMS = 256
BLIND_BATCH_ITEMS = 1024
IO_BATCH_ITEMS = 32
BATCH_BYTES = 64 << 20


def queue_for(op: str, batch: list[Item]) -> str:
    if len(batch) == 1 and (batch[0].get("size") or 0) >= big_file_bytes():
        return BIG_QUEUE
    return HASH_QUEUE if kind_of(op) == "cpu" else TRANSFER_QUEUE


def callback_queue(op: str) -> str:
    """Chord callbacks go where the batches went, so that the fleet for that work runs them."""
    return HASH_QUEUE if kind_of(op) == "cpu" else TRANSFER_QUEUE


# A vault's prefix to list (its item carries the manifest's checksums under it) goes
# alone: the prefixes are listed side by side, one a task. So does a pack (its item
# carries all its files): packs are made side by side.
LIST_OP = "vault-list"
PACK_OP = "pack"


def batch_items(op: str) -> int:
    """Items per batch at most: DMP_BATCH_ITEMS if set (tuning, tests), else by kind of work;
    one for a listing or a pack."""
    if op in (LIST_OP, PACK_OP):
        return 1
    env = os.environ.get("DMP_BATCH_ITEMS")
    if env:
        return max(1, int(env))
    return CPU_BATCH_ITEMS if kind_of(op) == "cpu" else IO_BATCH_ITEMS
