"""The README's set-up steps, as a newcomer follows them: copied into a fresh shell.

What runs: the first two of the README's numbered steps, exactly as the README
writes them (``python3 -m venv .venv``, then ``. .venv/bin/activate``), in ``sh``
started with an empty environment (only ``PATH`` and ``HOME``), in a new empty
directory.  When the tests run as root, the shell runs as the ordinary user
``nobody`` (through ``runuser``, or else ``setpriv``), provided that user can run
the interpreter; otherwise it runs as the current user.  ``python3`` in that shell
is the interpreter running these tests, so that each tested version of Python
checks the steps.  The test then checks what activating promises: ``python`` and
``pip`` are the environment's, and packages would be installed into it.

What does not run, and why:

* step 3, ``python -m pip install tox``: it downloads from PyPI, and the tests
  stay off the network;
* steps 4 and 5, ``tox -e docs`` and ``tox``: they build the site and run every
  test, this one included, which CI does (``.ci/run``) and a test cannot;
* macOS: the steps are checked where the tests run, which in CI is Linux.

For those steps, the test checks only that the README still lists them, in order.
"""

from __future__ import annotations

import configparser
import os
import pathlib
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def setup_commands() -> list[str]:
    """The command of each numbered step under "Set up on a fresh machine", in order."""
    text = README.read_text(encoding="utf-8")
    section = text.partition("\n## Set up on a fresh machine\n")[2].partition("\n#")[0]
    steps = re.split(r"^\d+\. ", section, flags=re.MULTILINE)[1:]
    commands = []
    for step in steps:
        shown = [line.strip()[2:] for line in step.splitlines() if line.strip().startswith("$ ")]
        assert len(shown) == 1, f"a step should show one command:\n{step}"
        commands.append(shown[0])
    return commands


def test_readme_setup_is_make_activate_install_build_test() -> None:
    assert setup_commands() == [
        "python3 -m venv .venv",
        ". .venv/bin/activate",
        "python -m pip install tox",
        "tox -e docs",
        "tox",
    ]


def test_readme_site_command_says_where_the_site_is() -> None:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    assert "The site is at" in tox["testenv:docs"]["commands"]


def test_readme_says_who_may_run_what_and_how_to_list_skips() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.partition("\n### Who may run what\n")[2].partition("\n#")[0]
    assert section, "the README has no 'Who may run what' section"
    assert "\n$ tox -e py -- -rs\n" in section  # a command to copy, not only a mention
    for who in (
        "**An ordinary user on Linux**",
        "**Examples that capture packets**",
        "**Root adds**",
    ):
        assert who in section, who
    # The namespace it sends readers to exists, with the reasons it can be refused.
    from tcpref import netns

    assert "`tcpref.netns`" in section
    assert callable(netns.unavailable_reason)
    for refusal in ("apparmor_restrict_unprivileged_userns", "max_user_namespaces", "seccomp"):
        assert refusal in section, refusal


# -- running the first steps ------------------------------------------------------------


def ordinary_user_prefix() -> tuple[list[str], int | None]:
    """How to run a command as an ordinary user: (prefix, uid); ([], None) for ourselves."""
    if os.geteuid() != 0:
        return [], None  # we are an ordinary user already
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return [], None
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"], nobody.pw_uid
    if shutil.which("setpriv"):
        ids = [f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        return ["setpriv", *ids], nobody.pw_uid
    return [], None


@pytest.fixture
def empty_directory() -> Iterator[pathlib.Path]:
    """A new directory, with ``bin/python3`` linked to this interpreter; removed after."""
    # realpath: in a virtual environment (tox's), sys.executable is a link, and the
    # steps must start from a Python that is not in an environment already.
    interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    where = pathlib.Path(os.path.realpath(tempfile.mkdtemp(prefix="tcpref-readme-")))
    try:
        (where / "bin").mkdir()
        (where / "bin" / "python3").symlink_to(interpreter)
        (where / "clone").mkdir()
        yield where
    finally:
        shutil.rmtree(where)


def fresh_shell(
    script: str, where: pathlib.Path, prefix: list[str]
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in ``sh`` with nothing inherited but a standard PATH and a HOME."""
    path = f"{where / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    return subprocess.run(
        [*prefix, "env", "-i", f"PATH={path}", f"HOME={where}", "sh", "-c", script],
        cwd=where / "clone",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("sh"), reason="needs a POSIX shell, sh")
def test_readme_first_steps_make_and_activate_an_environment(empty_directory: pathlib.Path) -> None:
    make, activate = setup_commands()[:2]
    prefix, uid = ordinary_user_prefix()
    if uid is not None:
        for path in [empty_directory, *empty_directory.rglob("*")]:
            os.lchown(path, uid, -1)  # the user owns the directory it works in
        if fresh_shell("python3 -c pass", empty_directory, prefix).returncode != 0:
            prefix, uid = [], None  # 'nobody' cannot run this interpreter: run as ourselves
    script = "\n".join(
        [
            "set -e",
            make,
            activate,
            'test "$VIRTUAL_ENV" = "$PWD/.venv"',
            'test "$(command -v python)" = "$PWD/.venv/bin/python"',
            "python -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))'",
            "python -m pip --version",
            "id -u",
        ]
    )
    done = fresh_shell(script, empty_directory, prefix)
    assert done.returncode == 0, done.stderr
    packages, pip, user = done.stdout.splitlines()
    venv = empty_directory / "clone" / ".venv"
    assert pathlib.Path(packages).is_relative_to(venv)  # pip installs go here
    assert f"from {venv}/" in pip
    assert int(user) == (uid if uid is not None else os.geteuid())
