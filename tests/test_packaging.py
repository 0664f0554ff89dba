"""The wheel holds the whole package: every module a reader imports is installed."""

from __future__ import annotations

import fnmatch
import importlib.metadata
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
