"""The simplest Celery fleet that does `dmp manifest --create --dir TREE -r`: a yardstick.

    CELERY_MINIMUM_URL=redis://... python bench/celery_minimum.py TREE    # the command
    CELERY_MINIMUM_URL=redis://... celery -A bench.celery_minimum worker -Q minimum

It walks the tree in dmp's order, sends the paths as JSON (the only safe serializer) in
batches of dmp's largest size, all at once in one group, has the workers hash them with
dmp's own hashing loop, and prints the digests it gets back through Celery's results:
nothing else. No window (its memory grows with the tree), no job record, no rows stream,
no retries, no events, no metadata, no quoting of names. Beside dmp's fleet, in
`bench_fleet.py`, it shows what of the fleet's CPU is Celery's and Redis's, and what is
dmp's own. Both need the repository on PYTHONPATH.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from celery import Celery, group

from dmp_cli.digest import digest_file

BATCH = 8192  # dmp's largest batch of small files (dmp_tasks.routing)

app = Celery("celery_minimum")
_url = os.environ.get("CELERY_MINIMUM_URL", "redis://127.0.0.1:6379/0")
app.conf.update(
    broker_url=_url,
    result_backend=_url,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,  # as dmp's: a batch whose worker dies is delivered again
    worker_prefetch_multiplier=1,
    task_default_queue="minimum",
    result_expires=600,
)


@app.task(name="minimum.hash")
def hash_paths(paths: list[str], cwd: str) -> str:
    """The digests of a batch, one a line (a string is the cheapest result to carry)."""
    return "\n".join(digest_file(os.path.join(cwd, path))[0] for path in paths)


def walk(directory: str) -> Iterator[str]:
    """Files below ``directory``, in the order of dmp's walk (names sorted)."""
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        path = f"{directory}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from walk(path)
        elif entry.is_file():
            yield path


def main() -> None:
    paths = list(walk(sys.argv[1]))
    batches = [paths[i : i + BATCH] for i in range(0, len(paths), BATCH)]
    result = group(hash_paths.s(batch, os.getcwd()) for batch in batches).apply_async()
    for batch, digests in zip(batches, result.get(), strict=True):
        lines = zip(digests.split("\n"), batch, strict=True)
        sys.stdout.write("".join(f"{digest}  {path}\n" for digest, path in lines))
    result.forget()


if __name__ == "__main__":
    main()
