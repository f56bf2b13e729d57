"""MUNGE credentials for the fleet's work: who sent a batch, and that it is this batch.

Anyone who can write to Redis can plant tasks, so the submitter signs each job and each
batch with a MUNGE credential and a worker verifies it before it does the work. MUNGE
states the uid and gid of the process that made the credential (munged learns them from
the socket, the submitter cannot choose them), and the credential's payload is the digest
of the work it authorizes (``digest_of``), so that it cannot be reused for other work.
munged refuses a credential made with another key, or past its TTL, and flags one it has
decoded before.

One credential a batch, never a file's: libmunge is called in-process through ctypes (a
round trip to munged on its Unix socket, no process started). Measured here: a sign or a
verify takes about 100 µs, of which about 45 µs of CPU in the caller and 50 µs in munged;
a batch of 8,192 files pays both, about 0.02 µs a file. The digest is the larger cost:
digest the batch's text as it travels (``wire.pack_items``), at 0.01 to 0.1 µs a file,
not its items as JSON values, which costs 1.5 µs a file at each end.

Replays and Celery's redelivery: munged remembers every credential it decoded until the
credential expires, and flags a second decode as replayed. A batch that Celery redelivers
after its worker died is decoded a second time by the same host's munged (when it lands on
that host again) and is flagged replayed like a planted copy. ``verify`` refuses a replayed
credential unless the caller passes ``accept_replay=True``; then ``Verified.replayed`` says
what munged said, and the caller decides (a task known to be redelivered, and idempotent,
may run again). munged's replay cache is its own host's: a copy decoded on another host is
not flagged at all.

Contexts: a munge context holds only options (socket, TTL), no connection (libmunge
connects anew for each call), and costs about 2.5 µs to make, set and destroy against
100 µs for the call: every call makes its own, so no context is ever shared between
threads or inherited through a fork.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dmp_cli.errors import DmpError
from dmp_cli.settings import whole_number

LIBRARY = "libmunge.so.2"
DEFAULT_SOCKET = "/run/munge/munge.socket.2"  # MUNGE's own default
# An hour: munged's own ceiling (its --max-ttl, 3600 s unless raised, silently caps any
# longer TTL asked for), and room for a batch's wait in the queue, which the window of
# batches in flight bounds. A longer DMP_MUNGE_TTL needs every munged's --max-ttl raised
# with it. A batch that Celery redelivers after its worker died comes back
# DMP_REDELIVERY_TIMEOUT (3600 s by default) after a worker took it: with both defaults
# its credential has expired by then, so such a batch must be signed anew, or the TTL
# (and --max-ttl) set above the redelivery timeout plus the queue's wait.
DEFAULT_TTL = 3600

# munge.h: munge_opt_t and munge_err_t.
_OPT_TTL = 4
_OPT_ENCODE_TIME = 6
_OPT_SOCKET = 8
_SUCCESS = 0
_SOCKET = 6
_BAD_CRED = 8
_BAD_VERSION = 9
_BAD_CIPHER = 10
_BAD_MAC = 11
_BAD_ZIP = 12
_BAD_REALM = 13
_CRED_INVALID = 14
_CRED_EXPIRED = 15
_CRED_REWOUND = 16
_CRED_REPLAYED = 17
_CRED_UNAUTHORIZED = 18

# What munged's refusal means for the work: (code, reason). A credential made with another
# key fails munged's MAC check exactly as a forged or altered one does (EMUNGE_CRED_INVALID):
# munged cannot tell them apart, so neither can we.
_REFUSALS = {
    _CRED_INVALID: ("forged", "forged credential (or one made with another MUNGE key)"),
    _BAD_CRED: ("forged", "forged credential (not a MUNGE credential)"),
    _BAD_VERSION: ("forged", "forged credential (unknown MUNGE version)"),
    _BAD_CIPHER: ("forged", "forged credential (unknown cipher)"),
    _BAD_MAC: ("forged", "forged credential (unknown MAC)"),
    _BAD_ZIP: ("forged", "forged credential (unknown compression)"),
    _BAD_REALM: ("forged", "forged credential (unknown realm)"),
    _CRED_UNAUTHORIZED: ("forged", "forged credential (restricted to another user)"),
    _CRED_EXPIRED: ("expired", "expired credential"),
    _CRED_REWOUND: ("rewound", "credential made in the future (the hosts' clocks differ)"),
    _CRED_REPLAYED: ("replayed", "replayed credential"),
}

# The domain of the digest, so that it cannot be confused with any other hash of the same
# bytes; a new encoding gets a new tag.
_DIGEST_TAG = b"dmp work v1\0"
# ASCII: a lone surrogate (a path that is not UTF-8) is escaped, not an encoding error.
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


class CredentialError(DmpError):
    """MUNGE could not make or check a credential."""


class Refused(CredentialError):
    """The credential does not authorize the work: the worker must not do it.

    ``reason`` is one line; ``code`` a stable word for it: ``missing``, ``forged``,
    ``expired``, ``rewound``, ``replayed`` or ``uncovered``. ``signer`` is who made the
    credential, when munged could tell (an expired, replayed or uncovering one), for the
    log; None otherwise."""

    def __init__(self, code: str, reason: str, signer: Verified | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.signer = signer


class MungeUnreachable(CredentialError):
    """munged did not answer on its socket: the host's fault, not the submitter's. A later
    attempt may succeed (munged restarted)."""

    transient = True


class LibraryMissing(CredentialError):
    """libmunge cannot be loaded: no credential can be made or checked on this host."""

    fatal = True


@dataclass(frozen=True)
class Verified:
    """What munged vouches for: the uid and gid that made the credential, when (seconds
    since the epoch), and whether munged had decoded this credential before."""

    uid: int
    gid: int
    encoded_at: int
    replayed: bool = False


def munge_socket(env: Mapping[str, str] | None = None) -> str:
    """munged's socket: DMP_MUNGE_SOCKET, or MUNGE's default."""
    env = os.environ if env is None else env
    return env.get("DMP_MUNGE_SOCKET") or DEFAULT_SOCKET


def munge_ttl(env: Mapping[str, str] | None = None) -> int:
    """A credential's time to live in seconds: DMP_MUNGE_TTL, or DEFAULT_TTL."""
    env = os.environ if env is None else env
    value = whole_number(env, "DMP_MUNGE_TTL", unit="second")
    return DEFAULT_TTL if value is None else value


def digest_of(*parts: Any) -> str:
    """The hex digest of the work ``parts`` describe: bytes, strings, and JSON values.

    Each part is framed by its kind and length, so that no two different sequences of
    parts encode alike (("ab", "c") and ("a", "bc") differ). Strings are UTF-8, with any
    undecodable path bytes kept as they were read (surrogateescape); JSON values are
    written with sorted keys and no spaces, so that equal values give equal digests.

    A batch's items are best given as the text that carries them (a string): hashing it
    costs a hundredth of encoding the items again."""
    hasher = hashlib.sha256(_DIGEST_TAG)
    for part in parts:
        kind, data = _encoded(part)
        hasher.update(kind + struct.pack(">Q", len(data)))
        hasher.update(data)
    return hasher.hexdigest()


def _encoded(part: Any) -> tuple[bytes, bytes]:
    if isinstance(part, bytes | bytearray | memoryview):
        return b"b", bytes(part)
    if isinstance(part, str):
        return b"s", part.encode("utf-8", "surrogateescape")
    try:
        text = _JSON.encode(part)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot digest a {type(part).__name__}: {exc}") from None
    return b"j", text.encode("ascii")


def sign(digest: str, socket: str | None = None, ttl: int | None = None) -> str:
    """A credential, from munged at ``socket``, whose payload is ``digest``: it says that
    this process's uid and gid authorize the work of that digest, for ``ttl`` seconds."""
    lib = _library()
    socket = socket or munge_socket()
    ttl = munge_ttl() if ttl is None else ttl
    payload = digest.encode("ascii")
    cred = ctypes.c_void_p()
    ctx = _context(lib, socket, ttl)
    try:
        err = lib.munge_encode(ctypes.byref(cred), ctx, payload, len(payload))
        if err != _SUCCESS:
            raise _failure(lib, ctx, err, socket, "sign")
        return ctypes.string_at(cred).decode("ascii")
    finally:
        lib.munge_ctx_destroy(ctx)
        if cred.value:
            _libc().free(cred)


def verify(
    credential: str | None,
    digest: str,
    socket: str | None = None,
    *,
    accept_replay: bool = False,
) -> Verified:
    """Who authorized the work of ``digest`` by ``credential``, as munged at ``socket``
    vouches; Refused (with its reason) if the credential does not authorize it, and
    MungeUnreachable if munged did not answer.

    A replayed credential is refused unless ``accept_replay``; then the result says
    ``replayed`` and the caller decides (see the module's note on redelivery)."""
    if not credential:
        raise Refused("missing", "no credential")
    lib = _library()
    socket = socket or munge_socket()
    try:
        raw = credential.encode("ascii")
    except UnicodeEncodeError:
        raise Refused("forged", "forged credential (not a MUNGE credential)") from None
    buf = ctypes.c_void_p()
    length = ctypes.c_int()
    uid = ctypes.c_uint32()
    gid = ctypes.c_uint32()
    ctx = _context(lib, socket, None)
    try:
        err = lib.munge_decode(
            raw,
            ctx,
            ctypes.byref(buf),
            ctypes.byref(length),
            ctypes.byref(uid),
            ctypes.byref(gid),
        )
        if err not in (_SUCCESS, _CRED_EXPIRED, _CRED_REPLAYED):
            raise _failure(lib, ctx, err, socket, "verify")
        # munged still vouches for the signer and the payload of an expired or a replayed
        # credential: the MAC held.
        payload = ctypes.string_at(buf, length.value) if buf.value else b""
        signer = Verified(uid.value, gid.value, _encode_time(lib, ctx), err == _CRED_REPLAYED)
    finally:
        lib.munge_ctx_destroy(ctx)
        if buf.value:
            _libc().free(buf)
    if payload != digest.encode("ascii"):
        raise Refused("uncovered", "credential does not cover this work", signer)
    if err == _CRED_EXPIRED:
        raise Refused(*_REFUSALS[err], signer)
    if err == _CRED_REPLAYED and not accept_replay:
        raise Refused(*_REFUSALS[err], signer)
    return signer


def _context(lib: ctypes.CDLL, socket: str, ttl: int | None) -> ctypes.c_void_p:
    """A new context that talks to munged at ``socket`` (and signs for ``ttl`` seconds);
    the caller destroys it. Typed as a pointer: the variadic calls would cut a bare int."""
    ctx = ctypes.c_void_p(lib.munge_ctx_create())
    if not ctx.value:
        raise MemoryError("munge_ctx_create failed")
    err = lib.munge_ctx_set(ctx, ctypes.c_int(_OPT_SOCKET), os.fsencode(socket))
    if err == _SUCCESS and ttl is not None:
        err = lib.munge_ctx_set(ctx, ctypes.c_int(_OPT_TTL), ctypes.c_int(ttl))
    if err != _SUCCESS:
        message = _text(lib.munge_ctx_strerror(ctx)) or _text(lib.munge_strerror(err))
        lib.munge_ctx_destroy(ctx)
        raise CredentialError(f"cannot set up a MUNGE context for {socket}: {message}")
    return ctx


def _encode_time(lib: ctypes.CDLL, ctx: ctypes.c_void_p) -> int:
    when = ctypes.c_long()
    if lib.munge_ctx_get(ctx, ctypes.c_int(_OPT_ENCODE_TIME), ctypes.byref(when)) != _SUCCESS:
        return 0
    return when.value


def _failure(
    lib: ctypes.CDLL, ctx: ctypes.c_void_p, err: int, socket: str, verb: str
) -> CredentialError:
    """The error for a failed encode or decode: munged's refusal of the credential, or
    munged out of reach."""
    if err in _REFUSALS:
        return Refused(*_REFUSALS[err])
    message = _text(lib.munge_ctx_strerror(ctx)) or _text(lib.munge_strerror(err))
    if err == _SOCKET:
        return MungeUnreachable(f"munged not reachable at {socket}: {message}")
    return CredentialError(f"MUNGE cannot {verb} a credential at {socket}: {message}")


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw else ""


_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}


def _new_lock() -> None:
    """A forked child starts with a free lock, whatever another thread held at the fork."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock)


def _library(name: str = LIBRARY) -> ctypes.CDLL:
    """libmunge, loaded once, with the signatures of the calls made here."""
    lib = _loaded.get(name)
    if lib is not None:
        return lib
    with _lock:
        if name not in _loaded:
            _loaded[name] = _load(name)
    return _loaded[name]


def _load(name: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise LibraryMissing(
            f"{name} cannot be loaded: MUNGE's library is needed to sign and verify the "
            "fleet's work (apt-get install libmunge2)"
        ) from None
    lib.munge_ctx_create.restype = ctypes.c_void_p
    lib.munge_ctx_create.argtypes = []
    lib.munge_ctx_destroy.restype = None
    lib.munge_ctx_destroy.argtypes = [ctypes.c_void_p]
    lib.munge_ctx_strerror.restype = ctypes.c_char_p
    lib.munge_ctx_strerror.argtypes = [ctypes.c_void_p]
    lib.munge_strerror.restype = ctypes.c_char_p
    lib.munge_strerror.argtypes = [ctypes.c_int]
    # munge_ctx_set and munge_ctx_get are variadic: their arguments are given typed.
    lib.munge_ctx_set.restype = ctypes.c_int
    lib.munge_ctx_get.restype = ctypes.c_int
    lib.munge_encode.restype = ctypes.c_int
    lib.munge_encode.argtypes = [
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    lib.munge_decode.restype = ctypes.c_int
    lib.munge_decode.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(ctypes.c_uint32),
        ctypes.POINTER(ctypes.c_uint32),
    ]
    return lib


def _libc() -> Any:
    """The C library, whose free() releases what libmunge allocated for us."""
    libc = _loaded.get("c")
    if libc is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.free.restype = None
        libc.free.argtypes = [ctypes.c_void_p]
        _loaded["c"] = libc  # loading it twice, in two threads at once, does no harm
    return libc
