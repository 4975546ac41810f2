"""Packaging (issue 12, item 12): a CPU install by default, a licence file, the Python versions torch supports."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_licence_file_is_apache_2(project):
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert project["license"] == "Apache-2.0"
    assert "LICENSE" in project.get("license-files", [])


def test_python_versions_beyond_3_11_admitted(project):
    spec = project["requires-python"]
    assert re.fullmatch(r">=\s*3\.11", spec), spec  # no upper cap: 3.12 and 3.13 are supported by torch


def test_torch_is_an_open_range_not_an_exact_pin(project):
    torch = [d for d in project["dependencies"] if re.match(r"torch\b", d)]
    assert torch == ["torch>=2.4"], torch  # an exact `==` pin resolves to PyPI's CUDA build on Linux


def test_makefile_installs_the_cpu_build_before_the_package():
    text = (REPO / "Makefile").read_text()
    recipe = text[text.index("$(STAMP): pyproject.toml"):text.index("touch $(STAMP)")]
    assert recipe.index("$(MAKE) --no-print-directory torch") < recipe.index("pip install --quiet -e")
    assert "TORCH_INDEX ?= https://download.pytorch.org/whl/cpu" in text
    torch_rule = text[text.index("\ntorch:"):text.index("\ndemo:")]
    assert "--no-index --no-deps '$(TORCH)'" in torch_rule and "--index-url '$(TORCH_INDEX)'" in torch_rule


def test_installed_torch_satisfies_the_declared_range():
    import torch
    from packaging.version import Version

    assert Version(torch.__version__.split("+")[0]) >= Version("2.4")
