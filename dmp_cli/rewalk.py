"""--create --dir --update's work in a hashing process: a piece of the tree walked again
beside the piece of the earlier manifest that holds it, made into the piece of the new
manifest and companion (``rewalk_piece``).

The command's own process cuts the earlier companion into pieces of whole records, in
the walk's order (``dmp_cli.runs.updating``); a piece holds the paths from its first
record's to the next piece's first record's, ``lo`` to ``hi``. A process walks only those
paths of the tree, an ``lstat`` a name (beside the directory's descriptor: no path
resolved again), and merges them with the piece's records. A
regular file whose record, as this dmp would write it from that ``lstat``, begins the
earlier record (the same path, size, mtime, ctime, inode, device, mode, owner, owners'
names and link count: nobody can set a ctime, so neither its bytes nor its extended
attributes changed) keeps both its earlier lines, byte for byte, and they go back as
ranges of the earlier files, not as bytes (``dmp_cli.earlier_piece.Part``): a directory's
files kept are one range of each file, and so is an unchanged piece. Any other file (changed,
new, a link to a file, one whose earlier lines are not in that form) goes through the
hash operation as a --create's would (``dmp_cli.ops``), with its earlier entry where it
has one: the output is byte for byte a full --create's.
"""

from __future__ import annotations

import errno
import os
import stat
from bisect import bisect_left

from dmp_cli.earlier_piece import EarlierPiece, Part, Piece, PieceResult, Unusable, names_of
from dmp_cli.fsutil import dir_prefix
from dmp_cli.manifest import FORMATS
from dmp_cli.meta import MetaError
from dmp_cli.ops import run_batch
from dmp_cli.options import Options, Work
from dmp_cli.recorder import owner_bytes, record_line
from dmp_cli.reuse import EarlierError
from dmp_cli.rows import Item, Status

# A file's record up to its link count, as ``dmp_cli.recorder.record_line`` writes it for
# a path that needs no escape in JSON: its directory, mode, owner and link count filled
# in first (``_template``).
_RECORD = (
    b'{"path":"%s%%s","type":"file","entry":true,"mode":"%04o","mtime_ns":%%d,"size":%%d,%s,'
    b'"ctime_ns":%%d,"ino":%%d,"dev":%%d,"nlink":%d'
)
_WORK = Work("hash", options=Options(meta=True).to_json())
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_PLAIN_WORK = Work("hash")


class _Stop(Exception):
    pass


class _Walker:
    def __init__(self, piece: Piece) -> None:
        self.p = piece
        self.out = PieceResult()
        self.man: list[Part] = []
        self.meta: list[Part] = []
        self.records = 0  # in self.meta
        self.earlier = EarlierPiece(piece)
        self.line = FORMATS[piece.fmt]
        self.own = {os.path.basename(path): path for path in piece.own}
        self.hashed = self.hashed_bytes = 0  # files hashed, and their bytes

    # ------------------------------------------------------------ the walk
    def walk(self) -> None:
        root = self.p.root
        key = names_of(dir_prefix(root))[:-1]
        if not os.path.isdir(root):
            if self._in(key):
                why = "Not a directory" if os.path.lexists(root) else "No such file or directory"
                self._problem({"path": root, "problem": why})
            return
        lo, hi = self.p.lo, self.p.hi
        if (hi is None or key < hi) and (lo is None or lo <= key or lo[: len(key)] == key):
            self._dir(root, key)  # the tree has paths in the piece

    def _in(self, key: list[str]) -> bool:
        lo, hi = self.p.lo, self.p.hi
        return (lo is None or key >= lo) and (hi is None or key < hi)

    def _dir(self, path: str, key: list[str]) -> None:
        mine = self._in(key)
        fd: int | None = None
        try:
            try:
                fd = os.open(path, _DIRECTORY)
            except OSError as exc:
                if exc.errno != errno.EMFILE:
                    raise
            names = sorted(os.listdir(path if fd is None else fd))
        except OSError as exc:
            if fd is not None:
                os.close(fd)
            if mine:
                item: Item = {"path": path, "problem": exc.strerror or str(exc)}
                if exc.errno is not None:
                    item["errno"] = exc.errno
                self._problem(item)
            return
        try:
            self._entries(path, key, names, fd, mine)
        finally:
            if fd is not None:
                os.close(fd)

    def _entries(
        self, path: str, key: list[str], names: list[str], fd: int | None, mine: bool
    ) -> None:
        """The entries of the directory ``path`` (``names``, sorted), each looked at
        beside its descriptor ``fd`` (None: out of descriptors, by its path)."""
        lo, hi = self.p.lo, self.p.hi
        if mine:
            self._met(path)
        m = len(key)
        start, end, skip = 0, len(names), None
        if lo is not None and len(lo) > m and lo[:m] == key:
            start = bisect_left(names, lo[m])
            if len(lo) > m + 1 and start < end and names[start] == lo[m]:
                skip = lo[m]  # only its subtree's later paths are in the piece
        if hi is not None and len(hi) > m and hi[:m] == key:
            end = bisect_left(names, hi[m])
            if len(hi) > m + 1 and end < len(names) and names[end] == hi[m]:
                end += 1
        names = names[start:end]
        prefix = dir_prefix(path)
        own = self.own
        # Whether each regular file may keep its earlier lines: a plain name, neither
        # the piece's boundary nor one of the run's own files.
        simple = _plain(prefix, names) and skip is None and own.keys().isdisjoint(names)
        bnames = "/".join(names).encode().split(b"/") if simple else []
        templates: dict[tuple[int, int, int, int], bytes] = {}
        run: list[bytes] = []  # the records expected of the files since the last other entry
        sizes: list[int] = []
        lstat, isreg, limit = os.lstat, stat.S_ISREG, self.p.limit
        at = "" if fd is not None else prefix  # what an lstat's name is relative to
        room = limit
        for n, name in enumerate(names):
            if not run:  # files before the piece is cut short
                room = limit - self.out.items
            if len(run) >= room:
                self._run(run, sizes, n, names, bnames, prefix, key)
                raise _Stop([*key, name])  # the rest in another piece, from this name on
            try:
                st = lstat(at + name, dir_fd=fd)
            except OSError:
                self._run(run, sizes, n, names, bnames, prefix, key)
                self._file(prefix + name, [*key, name], name)  # gone meanwhile: hashing says so
                continue
            mode = st.st_mode
            if simple and isreg(mode):
                form = (mode, st.st_uid, st.st_gid, st.st_nlink)
                template = templates.get(form)
                if template is None:
                    template = templates[form] = _template(prefix, *form)
                run.append(
                    template
                    % (bnames[n], st.st_mtime_ns, st.st_size, st.st_ctime_ns, st.st_ino, st.st_dev)
                )
                sizes.append(st.st_size)
                continue
            self._run(run, sizes, n, names, bnames, prefix, key)
            full = prefix + name
            if isreg(mode):
                if name == skip or (name in own and _same_file(full, own[name])):
                    continue
                self._file(full, [*key, name], name)
            elif stat.S_ISDIR(mode):
                if self.p.recursive:
                    self._dir(full, [*key, name])
            elif stat.S_ISLNK(mode):
                if name == skip:
                    continue
                try:
                    target = os.stat(full)
                except FileNotFoundError:
                    self._met(full)
                    continue
                except OSError as exc:
                    self._problem({"path": full, "problem": exc.strerror or str(exc)})
                    continue
                if stat.S_ISREG(target.st_mode):
                    self._file(full, [*key, name], name)
                else:
                    self._met(full)
        self._run(run, sizes, len(names), names, bnames, prefix, key)

    # ------------------------------------------------------------ reused as they were
    def _run(
        self,
        run: list[bytes],
        sizes: list[int],
        end: int,
        names: list[str],
        bnames: list[bytes],
        prefix: str,
        key: list[str],
    ) -> None:
        """Files of one directory, one after another, with the records expected of them
        (``run``), the names before ``end``: their earlier lines kept where the records
        begin those lines, all at once where they are all the next ones as they are; the
        others hashed. Emptied."""
        if not run:
            return
        bprefix = os.fsencode(prefix)
        first = end - len(run)
        mine = bnames[first:end]
        taken = self.earlier.take_run(run, bprefix, mine, [*key, names[end - 1]])
        if taken is not None:
            self._kept(*taken, len(run), sum(sizes))
        else:
            for n, (expected, size, bname) in enumerate(zip(run, sizes, mine, strict=True), first):
                place = [*key, names[n]]
                one = self.earlier.take_one(expected, bprefix + bname, place)
                if one is None:
                    self._file(prefix + names[n], place, names[n])
                else:
                    self._kept(*one, 1, size)
        run.clear()
        sizes.clear()

    def _kept(self, lines: Part, mlines: Part, count: int, size: int) -> None:
        """``count`` files whose earlier lines are kept as they are, ``size`` bytes in
        all: their records, their manifest lines."""
        _add(self.meta, lines)
        _add(self.man, mlines)
        self.records += count
        out = self.out
        out.items += count
        out.files += count
        out.reused += count
        out.entries += count
        out.bytes += size
        out.reused_bytes += size

    # ------------------------------------------------------------ the general way
    def _file(self, path: str, key: list[str], name: str) -> None:
        """A file hashed (or its earlier checksum kept) as the hash operation decides."""
        if name in self.own and _same_file(path, self.own[name]):
            return
        item: Item = {"path": path}
        old = self.earlier.find(key)
        if old is not None:
            item["old"] = old
        row = run_batch(_WORK if self.p.meta else _PLAIN_WORK, [item], threads=False)[0]
        out = self.out
        out.items += 1
        if not row.get("reused"):
            self.hashed += 1
            self.hashed_bytes += row.get("bytes", 0)
            if self.hashed > self.p.to_hash[0] or self.hashed_bytes > self.p.to_hash[1]:
                raise Unusable("much to hash")
        if row["status"] != Status.OK:
            out.problems.append((path, str(row.get("error"))))
        else:
            out.files += 1
            out.bytes += row["bytes"]
            if row.get("reused"):
                out.reused += 1
                out.reused_bytes += row["bytes"]
            self.man.append(self.line(row["digest"], path))
            if self.p.meta:
                self.meta.append(record_line(path, True, row.get("stat")))
                self.records += 1
                out.entries += 1

    def _problem(self, item: Item) -> None:
        """An input the walk could not use: its row, as hashing it would give."""
        row = run_batch(_PLAIN_WORK, [item], threads=False)[0]
        self.out.items += 1
        self.out.problems.append((item["path"], str(row.get("error"))))

    def _met(self, path: str) -> None:
        """A directory or a link the manifest will not name: its record now."""
        if not self.p.meta:
            return
        try:
            record = record_line(path)
        except FileNotFoundError:
            return  # gone since the walk: nothing to restore
        _add(self.meta, self.earlier.met(record))
        self.records += 1

    def result(self) -> PieceResult:
        out = self.out
        out.manifest = _joined(self.man)
        out.companion = _joined(self.meta)
        out.records = self.records
        return out


def _add(parts: list[Part], part: Part) -> None:
    """``part`` after ``parts``: one range with the last where it goes on from it."""
    if parts and isinstance(part, tuple):
        last = parts[-1]
        if isinstance(last, tuple) and last[1] == part[0]:
            parts[-1] = (last[0], part[1])
            return
    parts.append(part)


def _joined(parts: list[Part]) -> list[Part]:
    """The parts, the lines made anew one after another joined."""
    joined: list[Part] = []
    lines: list[bytes] = []
    for part in parts:
        if isinstance(part, bytes):
            lines.append(part)
            continue
        if lines:
            joined.append(b"".join(lines))
            lines = []
        joined.append(part)
    if lines:
        joined.append(b"".join(lines))
    return joined


def _plain(prefix: str, names: list[str]) -> bool:
    """Whether a directory's paths go into JSON and dmp's lines as they are: printable
    UTF-8, no quote and no backslash."""
    joined = prefix + "/".join(names)
    return joined.isprintable() and '"' not in joined and "\\" not in joined


def _template(prefix: str, mode: int, uid: int, gid: int, nlink: int) -> bytes:
    """The record of a file in ``prefix`` with that mode, owner and link count, to be
    completed by its name, mtime_ns, size, ctime_ns, ino and dev (``_RECORD``)."""
    head = os.fsencode(prefix).replace(b"%", b"%%")
    owner = owner_bytes(uid, gid).replace(b"%", b"%%")
    return _RECORD % (head, mode & 0o7777, owner, nlink)


def _same_file(path: str, other: str) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def rewalk_piece(piece: Piece) -> PieceResult:
    """Walk the paths of ``piece``, merged with its earlier entries, into its output.
    Raises Unusable where the earlier manifest cannot be read as pieces of a walk, and
    EarlierError (``dmp_cli.reuse``) at an earlier record that is not its entry's."""
    walker = _Walker(piece)
    try:
        try:
            walker.walk()
        except _Stop as stop:
            result = walker.result()
            earlier = walker.earlier
            result.rest = (stop.args[0], *earlier.offsets(), earlier.i, earlier.j)
            return result
        walker.earlier.drain()
    except MetaError as exc:
        raise EarlierError(f"--update: {exc}") from None
    return walker.result()


__all__ = ["Piece", "PieceResult", "Unusable", "names_of", "rewalk_piece"]
