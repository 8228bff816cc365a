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
from .distributed import is_main_process, process_state, shard
from .engine import Statistic, collect, decoder_layers, tokens_of
from .streaming import stream_collect

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
    "is_main_process",
    "process_state",
    "shard",
    "stream_collect",
    "load_calibration",
    "load_text",
    "token_windows",
    "tokenize",
    "tokens_of",
    "tokens_sha256",
]
