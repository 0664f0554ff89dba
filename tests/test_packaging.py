"""The wheel holds the whole package: every module a reader imports is installed."""

from __future__ import annotations

import configparser
import fnmatch
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def source_packages() -> set[str]:
    """Every package in the source tree, dotted: tcpref, tcpref.servers, ..."""
    return {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "tcpref").rglob("__init__.py")
    }


def test_packaging_configuration_finds_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    missed = {
        package
        for package in source_packages()
        if not any(fnmatch.fnmatchcase(package, pattern) for pattern in patterns)
    }
    assert {"tcpref", "tcpref.servers", "tcpref.demos"} <= source_packages()
    assert missed == set()


def test_packaging_installed_distribution_holds_every_module() -> None:
    installed = {str(path) for path in importlib.metadata.distribution("tcpref").files or ()}
    if "tcpref/__init__.py" not in installed:
        pytest.skip("tcpref is installed in editable mode here; tox installs the wheel")
    source = {path.relative_to(ROOT).as_posix() for path in (ROOT / "tcpref").rglob("*.py")}
    assert source - installed == set()
    assert "tcpref/py.typed" in installed


def versions_tested_by_tox() -> set[str]:
    """The X.Y of every pyXY environment that plain `tox` runs."""
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    env_list = tox["tox"]["env_list"]
    digits = re.search(r"\bpy3\{([\d,]+)\}", env_list)
    assert digits, env_list
    return {f"3.{minor}" for minor in digits.group(1).split(",")}


def test_packaging_classifiers_name_exactly_the_tested_pythons() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    prefix = "Programming Language :: Python :: "
    classified = {
        c.removeprefix(prefix) for c in config["project"]["classifiers"] if c.startswith(prefix)
    }
    versions = {v for v in classified if v.count(".") == 1}
    tested = versions_tested_by_tox()
    assert versions == tested
    assert config["project"]["requires-python"] == f">={min(tested, key=lambda v: int(v[2:]))}"


def test_packaging_ci_runs_every_tested_python() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    listed = re.search(r"^versions=\(([^)]*)\)", ci, re.MULTILINE)
    assert listed, "versions=(...) not found in .ci/run"
    assert set(listed.group(1).split()) == versions_tested_by_tox()
    assert "--skip-missing-interpreters false" in ci
