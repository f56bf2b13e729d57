"""Who may have the fleet do what (docs/security.md).

With ``DMP_AUTH=munge``, every batch, every chord's callback, every listing of a walk and
every detached job carries a MUNGE credential: made by the submitter, it states the
submitter's uid and gid and carries a digest of the work it authorizes (``digest_of``),
so that it cannot be reused for other work. A worker admits work only under such a
credential (``admit``):

- MUNGE's own checks apply: a forged credential, one made with another key, an expired or
  a replayed one is refused, and so is one whose digest is not the work's;
- a worker that runs as an ordinary user (a per-user fleet) takes only that user's work;
- a worker that runs as root (a shared fleet) takes anyone's but root's (unless
  ``DMP_ALLOW_ROOT_JOBS=1``), and does it as that user: each batch in a process that has
  dropped to the user's uid, gid and groups for good (``dmp_tasks.asuser``).

Celery delivers a batch again when the worker that had it died, and the same credential
is then decoded again: MUNGE calls it replayed, and expired once its time-to-live has
passed. The fleet tells such a redelivery from a replay by its own record: the first
worker that admitted the credential, fresh, kept its hash with the job's work
(``dmp:job:ID:admitted``). A credential met again is admitted only for the very work it
was first admitted for, and only while that work is not yet recorded as done; everything
else MUNGE refused stays refused.

``DMP_ALLOWED_ROOTS`` (a worker's setting, in either mode) lists the directories that
jobs may touch: a batch whose working directory is outside them is refused, and so is
each file whose path resolves outside them (``dmp_cli.roots``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dmp_cli.errors import UsageError
from dmp_cli.roots import AllowedRoots, parse_roots
from dmp_tasks import credentials
from dmp_tasks.credentials import Refused

log = logging.getLogger(__name__)

MODES = ("none", "munge")


@dataclass(frozen=True)
class Policy:
    """How this process signs work (a submitter) or admits it (a worker)."""

    mode: str = "none"
    socket: str = credentials.DEFAULT_SOCKET  # munged's
    ttl: int = credentials.DEFAULT_TTL  # a credential's life, in seconds
    allow_root: bool = False  # a shared fleet: whether jobs of uid 0 are taken
    roots: AllowedRoots | None = None  # the directories jobs may touch; None: any

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        """From DMP_AUTH, DMP_MUNGE_SOCKET, DMP_MUNGE_TTL, DMP_ALLOW_ROOT_JOBS and
        DMP_ALLOWED_ROOTS; a value that cannot be used is a UsageError naming it."""
        env = os.environ if env is None else env
        mode = (env.get("DMP_AUTH") or "none").strip().lower()
        if mode not in MODES:
            raise UsageError(f"DMP_AUTH must be none or munge, not {env.get('DMP_AUTH')!r}")
        allow = (env.get("DMP_ALLOW_ROOT_JOBS") or "0").strip().lower()
        if allow not in ("0", "1", "no", "yes", "false", "true"):
            raise UsageError(f"DMP_ALLOW_ROOT_JOBS must be 0 or 1, not {allow!r}")
        roots = env.get("DMP_ALLOWED_ROOTS")
        return cls(
            mode=mode,
            socket=credentials.munge_socket(env),
            ttl=credentials.munge_ttl(env),
            allow_root=allow in ("1", "yes", "true"),
            roots=AllowedRoots(parse_roots(roots)) if roots else None,
        )

    def describe(self) -> str:
        """What a worker says at start of how it admits work."""
        uid = os.geteuid()
        if self.mode == "none":
            said = (
                f"authentication none: anyone who can write to the broker can have this "
                f"worker read, upload and overwrite files as {_user(uid)}"
            )
        elif uid == 0:
            said = (
                "authentication munge, a shared fleet: each job's files are touched as the "
                "user who submitted it; jobs of root are "
                + ("taken" if self.allow_root else "refused")
            )
        else:
            said = (
                f"authentication munge, a per-user fleet: only the jobs of {_user(uid)} are taken"
            )
        if self.roots is not None:
            said += f"; jobs may touch only {', '.join(self.roots.roots)}"
        return said


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


_policy: Policy | None = None


def policy() -> Policy:
    """This process's policy, read from its environment once."""
    global _policy
    if _policy is None:
        _policy = Policy.from_env()
    return _policy


def sign(*parts: Any, settings: Policy | None = None) -> str | None:
    """A credential for the work ``parts`` name, as this process's user; None when the
    policy signs nothing (DMP_AUTH=none)."""
    settings = settings or policy()
    if settings.mode != "munge":
        return None
    return credentials.sign(credentials.digest_of(*parts), settings.socket, settings.ttl)


def job_parts(job: str, plan: str) -> tuple[Any, ...]:
    """What a detached job's credential covers: its id and all it is to do."""
    return ("job", job, plan)


def probe(settings: Policy | None = None) -> None:
    """Check, at a worker's start, that its policy can be kept: munged answers, and
    vouches for a credential of its own (CredentialError, in one line, if not)."""
    settings = settings or policy()
    if settings.mode != "munge":
        return
    digest = credentials.digest_of("probe", os.getpid(), time.time())
    credentials.verify(credentials.sign(digest, settings.socket, 60), digest, settings.socket)


@dataclass(frozen=True)
class Submitter:
    """Who submitted admitted work: the user it is done as."""

    uid: int
    gid: int

    @property
    def is_self(self) -> bool:
        """Whether the work is done as this process is (no process of its own needed)."""
        return self.uid == os.geteuid()


def admit(
    credential: str | None,
    parts: tuple[Any, ...],
    first_admitted: Callable[[str, str | None], bool],
    settings: Policy | None = None,
) -> Submitter | str:
    """Who submitted the work ``parts`` name, as ``credential`` proves; or, in one line,
    why it is refused. ``first_admitted(fingerprint, None)`` records a credential
    admitted fresh; ``first_admitted(fingerprint, "replayed" or "expired")`` says whether
    one met again is that same admitted work, not yet done (see the module's docstring).
    """
    settings = settings or policy()
    if settings.mode != "munge":
        return Submitter(os.geteuid(), os.getegid())
    if not credential:
        return "refused: no MUNGE credential (the command must run with DMP_AUTH=munge)"
    digest = credentials.digest_of(*parts)
    try:
        verified = credentials.verify(credential, digest, settings.socket, accept_replay=True)
        stale = "replayed" if verified.replayed else None
    except Refused as exc:
        if exc.code != "expired" or exc.signer is None:
            return f"refused: {exc.reason}"
        verified, stale = exc.signer, "expired"
    fingerprint = hashlib.sha256(credential.encode()).hexdigest()[:32]
    if stale and not first_admitted(fingerprint, stale):
        return f"refused: {stale} credential"
    uid = os.geteuid()
    if uid != 0 and verified.uid != uid:
        return (
            f"refused: a job of {_user(verified.uid)}, and this fleet runs as "
            f"{_user(uid)} and takes only its own user's jobs"
        )
    if verified.uid == 0 and uid == 0 and not settings.allow_root:
        return "refused: a job of root, which this fleet does not take (DMP_ALLOW_ROOT_JOBS)"
    if not stale:
        first_admitted(fingerprint, None)
    return Submitter(verified.uid, verified.gid)


__all__ = ["Policy", "Submitter", "admit", "job_parts", "policy", "sign"]
