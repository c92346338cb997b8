"""fakelens: explainable deepfake image detection."""

__version__ = "0.1.0"
