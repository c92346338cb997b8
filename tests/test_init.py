"""What ``import fakelens`` offers a library user (:mod:`fakelens`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fakelens


@pytest.mark.parametrize("name", fakelens.__all__)
def test_every_export_resolves(name: str) -> None:
    assert getattr(fakelens, name) is not None and name in dir(fakelens)


def test_exports_are_the_library_s_own_objects_and_unknown_names_fail() -> None:
    from fakelens.analysis import analyze_images
    from fakelens.models import load_detector

    assert fakelens.analyze_images is analyze_images and fakelens.load_detector is load_detector
    with pytest.raises(AttributeError, match="no attribute 'analyse_images'"):
        fakelens.analyse_images  # noqa: B018


def test_importing_the_package_stays_light() -> None:
    """The CLI's start-up imports fakelens; torch loads only when an export that needs it is used."""
    torch_loaded = "print('torch' in sys.modules)"
    code = f"import sys, fakelens; {torch_loaded}; fakelens.load_detector; {torch_loaded}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
