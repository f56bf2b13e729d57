"""The fleet's MUNGE credentials against a real munged: who signed, and for which work."""

from __future__ import annotations

import os
import re
import signal
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from dmp_tasks.credentials import (
    MungeUnreachable,
    Refused,
    Verified,
    digest_of,
    sign,
    verify,
)
from tests.munge import Munged, munge_daemon, munged_fixture  # noqa: F401 - ``munged``

pytestmark = pytest.mark.integration

WORK = digest_of("dmp.batch", "job-1", [{"path": "a/b.txt", "size": 3}])
OTHER_WORK = digest_of("dmp.batch", "job-1", [{"path": "a/c.txt", "size": 3}])
NOBODY = 60001


def refusal(credential: str | None, digest: str, socket: str) -> Refused:
    with pytest.raises(Refused) as caught:
        verify(credential, digest, socket)
    return caught.value


def test_round_trip_names_the_signer(munged: Munged) -> None:
    credential = sign(WORK, munged.socket, 60)
    verified = verify(credential, WORK, munged.socket)
    assert (verified.uid, verified.gid) == (os.getuid(), os.getgid())
    assert not verified.replayed
    assert abs(verified.encoded_at - time.time()) < 60


@pytest.mark.parametrize("credential", [None, ""], ids=["none", "empty"])
def test_no_credential(munged: Munged, credential: str | None) -> None:
    refused = refusal(credential, WORK, munged.socket)
    assert (refused.code, refused.reason) == ("missing", "no credential")


def _tampered(credential: str) -> str:
    """One character of the sealed body changed (the armor and the header left alone)."""
    at = len(credential) // 2
    return credential[:at] + ("A" if credential[at] != "A" else "B") + credential[at + 1 :]


@pytest.mark.parametrize(
    "forge",
    [_tampered, lambda _: "not a credential", lambda _: "MUNGE:!!not base64!!:", lambda _: "é"],
    ids=["tampered", "garbage", "bad-base64", "not-ascii"],
)
def test_forged_credential(munged: Munged, forge: object) -> None:
    assert callable(forge)
    refused = refusal(forge(sign(WORK, munged.socket, 60)), WORK, munged.socket)
    assert refused.code == "forged"
    assert refused.reason.startswith("forged credential")
    assert refused.signer is None


def test_credential_from_another_key(munged: Munged) -> None:
    """munged cannot tell another key's credential from a forged one: both fail its MAC
    (EMUNGE_CRED_INVALID), and the reason says so."""
    with munge_daemon() as elsewhere:
        credential = sign(WORK, elsewhere.socket, 60)
    refused = refusal(credential, WORK, munged.socket)
    assert refused.code == "forged"
    assert refused.reason == "forged credential (or one made with another MUNGE key)"


def test_expired_credential_names_its_signer(munged: Munged) -> None:
    credential = sign(WORK, munged.socket, 1)
    time.sleep(2.1)
    refused = refusal(credential, WORK, munged.socket)
    assert (refused.code, refused.reason) == ("expired", "expired credential")
    assert refused.signer is not None
    assert refused.signer.uid == os.getuid()


def test_replayed_credential(munged: Munged) -> None:
    credential = sign(WORK, munged.socket, 60)
    first = verify(credential, WORK, munged.socket)
    refused = refusal(credential, WORK, munged.socket)
    assert (refused.code, refused.reason) == ("replayed", "replayed credential")
    assert refused.signer == Verified(first.uid, first.gid, first.encoded_at, replayed=True)
    # A caller that knows the batch was redelivered may take it on munged's word.
    again = verify(credential, WORK, munged.socket, accept_replay=True)
    assert again == Verified(first.uid, first.gid, first.encoded_at, replayed=True)


def test_credential_for_other_work(munged: Munged) -> None:
    credential = sign(OTHER_WORK, munged.socket, 60)
    refused = refusal(credential, WORK, munged.socket)
    assert (refused.code, refused.reason) == ("uncovered", "credential does not cover this work")
    assert refused.signer is not None and refused.signer.uid == os.getuid()


def test_replayed_for_other_work_is_uncovered(munged: Munged) -> None:
    """A credential copied onto other work is refused for that, replayed or not."""
    credential = sign(WORK, munged.socket, 60)
    verify(credential, WORK, munged.socket)
    with pytest.raises(Refused) as caught:
        verify(credential, OTHER_WORK, munged.socket, accept_replay=True)
    assert caught.value.code == "uncovered"


def _sign_as(uid: int, gid: int, socket: str) -> str:
    """A credential made by a forked child running as ``uid`` and ``gid``."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns of forking a process with threads; the child only signs.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.write(write_end, sign(WORK, socket, 60).encode("ascii"))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        credential = pipe.read().decode("ascii")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return credential


@pytest.mark.skipif(os.geteuid() != 0, reason="changing uid needs root")
def test_credential_of_another_user(munged: Munged) -> None:
    credential = _sign_as(NOBODY, NOBODY, munged.socket)
    verified = verify(credential, WORK, munged.socket)
    assert (verified.uid, verified.gid) == (NOBODY, NOBODY)


def test_threads_sign_and_verify_at_once(munged: Munged) -> None:
    def round_trip(n: int) -> Verified:
        digest = digest_of("batch", n)
        return verify(sign(digest, munged.socket, 60), digest, munged.socket)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(round_trip, range(200)))
    assert {(r.uid, r.replayed) for r in results} == {(os.getuid(), False)}


def test_no_munged_at_the_socket(tmp_path: os.PathLike[str]) -> None:
    socket = os.path.join(tmp_path, "no-such.socket")
    with pytest.raises(MungeUnreachable, match=f"^munged not reachable at {re.escape(socket)}: "):
        sign(WORK, socket, 60)
    with pytest.raises(MungeUnreachable, match=f"^munged not reachable at {re.escape(socket)}: "):
        verify("MUNGE:whatever:", WORK, socket)


@pytest.mark.parametrize("signal", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_munged_gone(signal: signal.Signals) -> None:
    """munged gone since the credential was made: the host's fault, said as such. Killed,
    it leaves its socket behind, and libmunge tries it again for about 2 s first."""
    with munge_daemon() as daemon:
        credential = sign(WORK, daemon.socket, 60)
        daemon.proc.send_signal(signal)
        daemon.proc.wait(10)
        started = time.monotonic()
        with pytest.raises(MungeUnreachable) as caught:
            verify(credential, WORK, daemon.socket)
    assert str(caught.value).startswith(f"munged not reachable at {daemon.socket}: ")
    assert "\n" not in str(caught.value)
    assert time.monotonic() - started < 10
