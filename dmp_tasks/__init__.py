"""dmp's fleet: Celery tasks that run dmp's per-file operations on workers, through Redis.

``celery -A dmp_tasks worker`` finds the app here; ``dmp worker`` is the same worker.
"""

from dmp_tasks.app import app

__all__ = ["app"]
