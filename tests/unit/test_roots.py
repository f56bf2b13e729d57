"""Paths are allowed beneath DMP_ALLOWED_ROOTS only, whatever the links planted on the way:
every test runs twice, with the kernel's openat2 and with the walk that stands in for it,
and the two answer alike."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dmp_cli import roots as roots_module
from dmp_cli.errors import PathRefused, UsageError
from dmp_cli.roots import AllowedRoots, openat2_available, parse_roots


@pytest.fixture(params=["openat2", "walk"])
def use_openat2(request: pytest.FixtureRequest) -> bool:
    if request.param == "openat2" and not openat2_available():
        pytest.skip("this kernel has no openat2")
    return bool(request.param == "openat2")


class Site:
    """tmp/root (allowed), tmp/root2 (allowed), tmp/outside (not), and links planted in
    root: out -> ../outside, in -> sub, secret -> ../outside/secret, gone -> ../nowhere."""

    def __init__(self, tmp_path: Path) -> None:
        base = Path(os.path.realpath(tmp_path))
        self.root, self.root2, self.outside = base / "root", base / "root2", base / "outside"
        for directory in (self.root / "sub" / "deeper", self.root2, self.outside):
            directory.mkdir(parents=True)
        (self.root / "sub" / "file").write_text("inside")
        (self.root2 / "file").write_text("inside too")
        (self.outside / "secret").write_text("secret")
        (self.root / "out").symlink_to("../outside")
        (self.root / "in").symlink_to("sub")
        (self.root / "secret").symlink_to("../outside/secret")
        (self.root / "gone").symlink_to("../nowhere")
        self.cwd = str(self.root)

    def roots(self, use_openat2: bool) -> AllowedRoots:
        return AllowedRoots(parse_roots(f"{self.root}:{self.root2}"), use_openat2=use_openat2)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


@pytest.fixture
def roots(site: Site, use_openat2: bool) -> AllowedRoots:
    return site.roots(use_openat2)


def outside(site: Site, path: str) -> str:
    return f"{path}: outside the allowed roots ({site.root}, {site.root2})"


def a_link(path: str, link: Path) -> str:
    return f"{path}: a symbolic link on the way ({link})"


@pytest.mark.parametrize(
    "path",
    ["sub/file", "./sub//file", "sub/deeper", "sub", "sub/deeper/../file", "sub/.."],
    ids=["file", "dots-and-slashes", "directory", "sub", "dotdot-stays", "dotdot-to-root"],
)
def test_a_path_inside_a_root_is_allowed(site: Site, roots: AllowedRoots, path: str) -> None:
    assert roots.check(path, site.cwd) is None
    assert roots.check(str(site.root / path), "/") is None


def test_the_roots_themselves_are_allowed(site: Site, roots: AllowedRoots) -> None:
    assert roots.check(str(site.root), "/") is None
    assert roots.check(".", str(site.root2)) is None
    assert roots.check("", str(site.root)) == ": not a path"


def test_a_path_in_the_second_root_is_allowed(site: Site, roots: AllowedRoots) -> None:
    assert roots.check(str(site.root2 / "file"), site.cwd) is None
    assert roots.check("new", str(site.root2)) is None


def test_a_path_outside_the_roots_is_refused(site: Site, roots: AllowedRoots) -> None:
    secret = str(site.outside / "secret")
    assert roots.check(secret, site.cwd) == outside(site, secret)
    assert roots.check("secret", str(site.outside)) == outside(site, "secret")
    assert roots.check("/", site.cwd) == outside(site, "/")


@pytest.mark.parametrize(
    "path",
    ["..", "../outside/secret", "sub/../../outside/secret", "sub/deeper/../../..", "../root/sub"],
    ids=["parent", "sibling", "from-sub", "climbing", "out-and-back"],
)
def test_dotdot_that_leaves_the_root_is_refused(site: Site, roots: AllowedRoots, path: str) -> None:
    # Even back into it: ".." is judged where it is met, and above the root is refused.
    assert roots.check(path, site.cwd) == outside(site, path)


def test_dotdot_from_one_root_into_another_is_refused(site: Site, roots: AllowedRoots) -> None:
    path = str(site.root2 / ".." / "root" / "sub")
    assert roots.check(path, "/") == outside(site, path)


def test_a_path_beneath_nested_roots_is_allowed_by_either(site: Site, use_openat2: bool) -> None:
    nested = AllowedRoots([str(site.root / "sub"), str(site.root)], use_openat2=use_openat2)
    assert nested.check("sub/../sub/file", site.cwd) is None
    assert nested.check("../root/sub/file", str(site.root / "sub")) is None


@pytest.mark.parametrize(
    ("path", "link"),
    [("out/secret", "out"), ("out/new", "out"), ("sub/../out/secret", "sub/../out")],
    ids=["existing", "not-yet", "after-dotdot"],
)
def test_a_link_on_the_way_out_is_refused(
    site: Site, roots: AllowedRoots, path: str, link: str
) -> None:
    assert roots.check(path, site.cwd) == a_link(path, site.root / link)


@pytest.mark.parametrize("path", ["in/file", "in/new", "in/deeper/../file"])
def test_a_link_on_the_way_is_refused_even_leading_inside(
    site: Site, roots: AllowedRoots, path: str
) -> None:
    # A link among the directories is refused wherever it leads: the walk cannot tell
    # safely where, and openat2 is held to the walk's answer.
    assert roots.check(path, site.cwd) == a_link(path, site.root / "in")


@pytest.mark.parametrize("name", ["out", "in", "secret", "gone"])
def test_a_link_at_the_end_is_allowed_only_if_not_followed(
    site: Site, roots: AllowedRoots, name: str
) -> None:
    assert roots.check(name, site.cwd, follow_final=False) is None
    assert roots.check(name, site.cwd) == a_link(name, site.root / name)


@pytest.mark.parametrize(
    "path", ["new", "sub/new", "sub/new/deeper/file", "sub/deeper/../new/file"]
)
def test_a_path_not_there_yet_is_judged_by_its_deepest_directory(
    site: Site, roots: AllowedRoots, path: str
) -> None:
    assert roots.check(path, site.cwd) is None


def test_dotdot_after_a_name_not_there_yet_is_refused(site: Site, roots: AllowedRoots) -> None:
    path = "sub/new/../file"
    assert (
        roots.check(path, site.cwd)
        == f"{path}: '..' after {site.root}/sub/new, which does not exist"
    )


def test_a_file_on_the_way_is_said_plainly(site: Site, roots: AllowedRoots) -> None:
    assert roots.check("sub/file/x", site.cwd) == "sub/file/x: Not a directory"


def test_a_name_with_a_newline_is_refused_in_one_line(site: Site, roots: AllowedRoots) -> None:
    reason = roots.check("../a\nb", site.cwd)
    assert reason is not None and "\n" not in reason and "outside the allowed roots" in reason


def test_both_resolutions_answer_alike(site: Site) -> None:
    if not openat2_available():
        pytest.skip("this kernel has no openat2")
    paths = ["sub/file", "..", "out/secret", "in/file", "secret", "gone/x", "sub/new/../x", "new"]
    kernel, walk = site.roots(True), site.roots(False)
    for path in paths:
        for follow in (True, False):
            assert kernel.check(path, site.cwd, follow_final=follow) == walk.check(
                path, site.cwd, follow_final=follow
            ), path


def _opened(roots: AllowedRoots, path: str, cwd: str, flags: int) -> str:
    try:
        os.close(roots.open_beneath(path, cwd, flags, 0o600))
    except PathRefused as exc:
        return str(exc)
    except OSError as exc:
        return os.strerror(exc.errno or 0)
    return "opened"


@pytest.mark.parametrize(
    "flags",
    [
        os.O_RDONLY,
        os.O_RDONLY | os.O_NOFOLLOW,
        os.O_RDONLY | os.O_DIRECTORY,
        os.O_PATH,
        os.O_PATH | os.O_NOFOLLOW,
        os.O_PATH | os.O_DIRECTORY,
        os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY,
        os.O_WRONLY | os.O_CREAT,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    ],
    ids=[
        "read",
        "nofollow",
        "dir",
        "path",
        "path-nofollow",
        "path-dir",
        "path-nofollow-dir",
        "create",
        "create-excl",
    ],
)
def test_both_resolutions_open_alike(site: Site, flags: int) -> None:
    if not openat2_available():
        pytest.skip("this kernel has no openat2")
    paths = ["out", "in", "secret", "gone", "sub", "sub/file", "sub/new", "gone/x", "sub/..", ".."]
    kernel, walk = site.roots(True), site.roots(False)
    made = site.root / "sub" / "new"
    for path in paths:
        by_kernel = _opened(kernel, path, site.cwd, flags)
        made.unlink(missing_ok=True)
        assert by_kernel == _opened(walk, path, site.cwd, flags), path
        made.unlink(missing_ok=True)


# ---------------------------------------------------------------- open_beneath


def test_open_beneath_opens_a_file_inside(site: Site, roots: AllowedRoots) -> None:
    fd = roots.open_beneath("sub/file", site.cwd, os.O_RDONLY)
    with os.fdopen(fd, "rb") as opened:
        assert not os.get_inheritable(fd)
        assert opened.read() == b"inside"


def test_open_beneath_creates_a_file_inside(site: Site, roots: AllowedRoots) -> None:
    fd = roots.open_beneath("sub/deeper/made", site.cwd, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    os.write(fd, b"made")
    os.close(fd)
    assert (site.root / "sub" / "deeper" / "made").read_text() == "made"


@pytest.mark.parametrize(
    ("path", "reason"),
    [("../outside/secret", "outside"), ("out/secret", "link"), ("secret", "link")],
    ids=["dotdot", "link-on-the-way", "link-at-the-end"],
)
def test_open_beneath_writes_through_no_link(
    site: Site, roots: AllowedRoots, path: str, reason: str
) -> None:
    with pytest.raises(PathRefused) as refused:
        roots.open_beneath(path, site.cwd, os.O_WRONLY | os.O_TRUNC)
    assert str(refused.value) == roots.check(path, site.cwd)
    assert reason in str(refused.value)
    assert (site.outside / "secret").read_text() == "secret"


def test_open_beneath_opens_a_link_itself_when_asked(site: Site, roots: AllowedRoots) -> None:
    fd = roots.open_beneath("secret", site.cwd, os.O_PATH | os.O_NOFOLLOW)
    try:
        assert os.readlink("", dir_fd=fd) == "../outside/secret"
    finally:
        os.close(fd)


def test_open_beneath_says_what_the_open_met(site: Site, roots: AllowedRoots) -> None:
    with pytest.raises(FileNotFoundError):
        roots.open_beneath("sub/new/file", site.cwd, os.O_WRONLY | os.O_CREAT)
    with pytest.raises(FileNotFoundError):
        roots.open_beneath("sub/new", site.cwd, os.O_RDONLY)


# ---------------------------------------------------------------- the setting


def test_the_setting_names_resolved_directories(tmp_path: Path) -> None:
    site = Site(tmp_path)
    alias = site.root.parent / "alias"
    alias.symlink_to("root")
    value = f"{alias}:{site.root2}/:{site.root}"
    assert parse_roots(value) == (str(site.root), str(site.root2))
    assert parse_roots("") == ()


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("relative/dir", "DMP_ALLOWED_ROOTS must name absolute directories, not 'relative/dir'"),
        ("", "DMP_ALLOWED_ROOTS must name absolute directories, not an empty entry"),
        ("{root}/missing", "DMP_ALLOWED_ROOTS: {root}/missing: No such file or directory"),
        ("{root}/sub/file", "DMP_ALLOWED_ROOTS: {root}/sub/file: not a directory"),
    ],
    ids=["relative", "empty", "missing", "file"],
)
def test_a_bad_entry_is_a_usage_error_naming_it(tmp_path: Path, entry: str, said: str) -> None:
    site = Site(tmp_path)
    with pytest.raises(UsageError) as error:
        parse_roots(f"{site.root2}:{entry.format(root=site.root)}")
    assert str(error.value) == said.format(root=site.root)


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EPERM], ids=["no-call", "seccomp"])
def test_a_kernel_without_openat2_is_walked(
    site: Site, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def refused(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(roots_module, "_openat2_usable", None)
    monkeypatch.setattr(roots_module, "_openat2", refused)
    assert not openat2_available()
    allowed = AllowedRoots([str(site.root)])
    assert not allowed.use_openat2
    assert allowed.check("sub/file", site.cwd) is None
    assert allowed.check("in/file", site.cwd) == a_link("in/file", site.root / "in")
