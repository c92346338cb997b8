"""Detectors: the contract, the registry and the registered models."""

from fakelens.models import timm_models as _timm_models  # noqa: F401  (registers effnet-lite0, vit-small-reg4)
from fakelens.models import tiny as _tiny  # noqa: F401  (registers tiny-cnn, tiny-vit)
from fakelens.models.base import Detector, InputSpec, TokenLayout
from fakelens.models.calibration import Calibration
from fakelens.models.checkpoint import load_checkpoint, load_detector, load_ensemble, save_checkpoint
from fakelens.models.ensemble import Ensemble, EnsembleVerdict, MemberScore, predict_proba
from fakelens.models.registry import MODELS, create_model, register_model
from fakelens.models.wrap import infer_layers, wrap_model

__all__ = [
    "MODELS",
    "Calibration",
    "Detector",
    "Ensemble",
    "EnsembleVerdict",
    "InputSpec",
    "MemberScore",
    "TokenLayout",
    "create_model",
    "infer_layers",
    "load_checkpoint",
    "load_detector",
    "load_ensemble",
    "predict_proba",
    "register_model",
    "save_checkpoint",
    "wrap_model",
]
