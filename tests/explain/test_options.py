"""Method options: what ``fakelens methods NAME`` lists is exactly what ``--set`` and the factories accept."""

from __future__ import annotations

import re

import pytest

from fakelens.errors import ConfigError
from fakelens.explain.engine import EXPLAINERS, method_names, method_options, parse_options


@pytest.mark.parametrize("method", method_names())
def test_every_listed_option_is_accepted_with_its_default(method: str) -> None:
    options = method_options(method)
    if method not in EXPLAINERS:
        assert options == {}  # gradient CAMs: nothing to set
        return
    assert options, f"{method} lists no options"
    for name, param in options.items():
        assert param.default is not param.empty, f"{method}.{name} has no default"
        EXPLAINERS.create(method, **{name: param.default})


def test_ablationcam_does_not_list_options_it_would_ignore() -> None:
    assert {"fold_bn", "autotune"}.isdisjoint(method_options("ablationcam"))
    assert {"fold_bn", "autotune"} <= set(method_options("scorecam"))
    with pytest.raises(ConfigError, match="ablationcam has no option 'fold_bn'"):
        parse_options(["ablationcam.fold_bn=true"], ["ablationcam"])


def test_values_are_json_else_text() -> None:
    got = parse_options(
        ["occlusion.window=[16, 24]", "occlusion.fill=blur", "scorecam.top_k=8", "scorecam.fold_bn=null"],
        ["occlusion", "scorecam"],
    )
    assert got == {
        "occlusion": {"window": (16, 24), "fill": "blur"},
        "scorecam": {"top_k": 8, "fold_bn": None},
    }
    with pytest.raises(ConfigError, match="bad option for occlusion"):
        parse_options(["occlusion.fill=purple"], ["occlusion"])
    # a value of the wrong plain type is named with the type wanted, not with Python's comparison error
    for arg, message in (
        ("rise.n_masks=abc", "rise.n_masks must be int, not 'abc'"),
        ("rise.n_masks=true", "rise.n_masks must be int, not True"),
        ("rise.p=high", "rise.p must be float, not 'high'"),
        ("scorecam.top_k=x", "scorecam.top_k must be int or null, not 'x'"),
        ("scorecam.weights=foo", "scorecam.weights must be one of difference, softmax, not 'foo'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_options([arg], [arg.split(".")[0]])
    assert parse_options(["rise.p=1", "scorecam.top_k=null"], ["rise", "scorecam"]) == {
        "rise": {"p": 1},
        "scorecam": {"top_k": None},
    }
