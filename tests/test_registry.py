"""The registry: clashes are one clear ConfigError naming both registrations, also across shared names."""

from __future__ import annotations

import pytest

from fakelens.errors import ConfigError
from fakelens.registry import Registry


def first() -> int:
    return 1


def second() -> int:
    return 2


def test_a_clash_names_where_the_first_registration_came_from() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("a")(first)
    reg.register("a")(first)  # the same factory again (a notebook cell run twice): replaced
    with pytest.raises(ConfigError, match=r"thing 'a' is registered twice: first by .*test_registry\.first"):
        reg.register("a")(second)
    with pytest.raises(ValueError):  # ConfigError is a ValueError: older `except ValueError` still holds
        reg.register("a")(second)
    assert reg.create("a") == 1


def test_registries_sharing_names_refuse_each_others() -> None:
    cams: Registry[int] = Registry("CAM method")
    others: Registry[int] = Registry("explanation method", shares_names_with=cams)
    third: Registry[int] = Registry("third", shares_names_with=others)
    cams.register("gradcam")(first)
    others.register("occlusion")(first)
    with pytest.raises(
        ConfigError, match=r"explanation method 'gradcam' .* clashes with the CAM method 'gradcam'"
    ):
        others.register("gradcam")(second)
    with pytest.raises(
        ConfigError, match=r"CAM method 'occlusion' .* explanation method 'occlusion' registered by"
    ):
        cams.register("occlusion")(second)
    with pytest.raises(ConfigError, match="clashes"):
        third.register("gradcam")(second)
    with pytest.raises(ConfigError, match="clashes"):
        cams.register("x")(first) if third.register("x")(second) else None
    assert cams.names() == ["gradcam"] and others.names() == ["occlusion"] and third.names() == ["x"]
    unrelated: Registry[int] = Registry("model")
    unrelated.register("gradcam")(second)  # a model may be named like a method
