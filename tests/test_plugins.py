"""Plugins: methods registered from outside fakelens reach the command line; a broken one is one line."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakelens import plugins
from fakelens.cli.main import app
from fakelens.errors import ConfigError
from fakelens.explain import CAMS, EXPLAINERS, GradientCAM, register_cam

runner = CliRunner()

PLUGIN = '''
from torch import Tensor
from fakelens.explain import GradientCAM, register_cam

@register_cam("test-absgradcam")
class AbsGradCAM(GradientCAM):
    """|g|-weighted CAM, registered by a plugin."""

    def weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        return grads.abs().mean(dim=(2, 3))
'''


def test_a_module_named_in_the_environment_registers_its_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fl_test_plugin_ok.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        res = runner.invoke(app, ["methods"], env={"FAKELENS_PLUGINS": "fl_test_plugin_ok"})
        assert res.exit_code == 0, res.output
        assert "test-absgradcam" in res.output
    finally:  # the rest of the session sees only fakelens's own methods
        CAMS._items.pop("test-absgradcam", None)
        sys.modules.pop("fl_test_plugin_ok", None)
        plugins._loaded.discard("fl_test_plugin_ok")


def test_a_broken_plugin_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fl_test_plugin_bad.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("fl_test_plugin_bad", "fl_test_no_such_module"):
        res = runner.invoke(app, ["methods"], env={"FAKELENS_PLUGINS": name})
        assert res.exit_code == 2 and f"cannot load the fakelens plugin '{name}'" in res.output
        assert "Traceback" not in res.output
        assert ("PYTHONPATH" in res.output) is (name == "fl_test_no_such_module")  # only where it helps
    sys.modules.pop("fl_test_plugin_bad", None)


def test_running_a_notebook_cell_again_replaces_its_method_but_a_clash_still_raises() -> None:
    def define() -> type[GradientCAM]:
        class Twice(GradientCAM):
            def weights(self, acts, grads):  # type: ignore[no-untyped-def]
                return grads.mean(dim=(2, 3))

        return Twice

    try:
        register_cam("test-twice")(define())
        register_cam("test-twice")(define())  # the same class again: replaced
        with pytest.raises(ValueError, match="registered twice"):
            register_cam("gradcam")(define())
    finally:
        CAMS._items.pop("test-twice", None)


def test_a_plugin_cannot_shadow_a_method_of_the_other_registry() -> None:
    """CAMs and the other methods are two registries but one ``--method`` namespace: a CAM named
    ``occlusion`` silently replaced occlusion, an explainer named ``gradcam`` was accepted too."""

    class Shadow(GradientCAM):
        def weights(self, acts, grads):  # type: ignore[no-untyped-def]
            return grads.mean(dim=(2, 3))

    before = (CAMS.names(), EXPLAINERS.names())
    with pytest.raises(ConfigError, match=r"CAM method 'occlusion' .*clashes with the explanation method"):
        register_cam("occlusion")(Shadow)
    with pytest.raises(ConfigError, match=r"explanation method 'gradcam' .*clashes with the CAM method"):
        EXPLAINERS.register("gradcam")(Shadow)  # type: ignore[arg-type]
    assert (CAMS.names(), EXPLAINERS.names()) == before
    assert CAMS.get("gradcam") is not Shadow and Shadow.name == ""


def test_a_plugin_with_a_broken_cam_is_one_line_and_leaves_the_built_ins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``weights(self, acts)`` without ``grads``: registered, then a 76-line traceback inside ``explain`` that
    took gradcam down with it. Now the import fails in one line naming the plugin, class and signature."""
    (tmp_path / "fl_test_plugin_badsig.py").write_text(
        textwrap.dedent(
            """
            from fakelens.explain import GradientCAM, register_cam

            @register_cam("test-badsig")
            class BadSig(GradientCAM):
                def weights(self, acts):
                    return acts.mean(dim=(2, 3))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        res = runner.invoke(app, ["methods"], env={"FAKELENS_PLUGINS": "fl_test_plugin_badsig"})
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert "cannot load the fakelens plugin 'fl_test_plugin_badsig'" in res.output
        assert "weights() must take (self, acts, grads), not weights(self, acts)" in res.output
        assert "test-badsig" not in CAMS and "gradcam" in CAMS
    finally:
        CAMS._items.pop("test-badsig", None)
        sys.modules.pop("fl_test_plugin_badsig", None)
        plugins._loaded.discard("fl_test_plugin_badsig")
