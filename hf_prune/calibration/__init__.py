"""Calibration: the text and token windows methods score on, and the engine that collects statistics from them."""

from .data import (
    BUILTIN,
    BUILTIN_EVAL,
    HUB_DATASETS,
    CalibrationData,
    Text,
    adds_bos,
    builtin_text,
    load_calibration,
    load_text,
    token_windows,
    tokenize,
    tokens_sha256,
)
from .engine import Statistic, collect, decoder_layers, tokens_of

__all__ = [
    "BUILTIN",
    "BUILTIN_EVAL",
    "HUB_DATASETS",
    "CalibrationData",
    "Statistic",
    "Text",
    "adds_bos",
    "builtin_text",
    "collect",
    "decoder_layers",
    "load_calibration",
    "load_text",
    "token_windows",
    "tokenize",
    "tokens_of",
    "tokens_sha256",
]
