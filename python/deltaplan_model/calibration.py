"""The calibration file, format version 2 (Docs/calibration-format.md), written atomically.

Per entry M (a module with its own input statistics): `M.gram` (F32 or F64 [h_in, h_in]),
`M.count` (I64 [1]), `M.inputs` (F32 [n, h_in], when n > 0). Per module (entries and aliases):
`M.out_gram` (F32 or F64 [h_out, h_out], or [h_out] when diagonal) and `M.grads` (F32 [n, h_out],
when n > 0), present when sensitivities were captured.

Metadata: `deltaplan.calibration_format` = "2", `deltaplan.aliases` (JSON, when any module
aliases another), `deltaplan.probes` and `deltaplan.objective` (with sensitivities only),
`deltaplan.samples` = {"rows": n, "tokens": N, "probes": P, "seed": s} (P = 0 without
sensitivities), `deltaplan.source`.
"""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from .atomic import atomic_write
from .capture import CaptureResult
from .checkpoint import save_safetensors
from .errors import DeltaPlanError

FORMAT_VERSION = "2"
FORMAT_KEY = "deltaplan.calibration_format"
ALIASES_KEY = "deltaplan.aliases"
PROBES_KEY = "deltaplan.probes"
OBJECTIVE_KEY = "deltaplan.objective"
SAMPLES_KEY = "deltaplan.samples"
SOURCE_KEY = "deltaplan.source"

STAT_DTYPES = {"f32": torch.float32, "f64": torch.float64}


def calibration_tensors(result: CaptureResult, stat_dtype: str = "f32") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of the file for `result`."""
    if stat_dtype not in STAT_DTYPES:
        raise DeltaPlanError(f"--gram-dtype must be f32 or f64, got {stat_dtype!r}")
    dtype = STAT_DTYPES[stat_dtype]
    tensors: dict[str, torch.Tensor] = {}

    def put(name: str, value: torch.Tensor) -> None:
        if name in tensors:
            raise DeltaPlanError(f"two calibration tensors would be named {name}; rename or exclude one module")
        tensors[name] = value.contiguous()

    n = result.rows
    for entry, gram in result.grams.items():
        put(f"{entry}.gram", gram.to(dtype))
        put(f"{entry}.count", torch.tensor([result.tokens], dtype=torch.int64))
        if n > 0:
            put(f"{entry}.inputs", result.inputs[entry].to(torch.float32))
    for module, out_gram in result.out_grams.items():
        put(f"{module}.out_gram", out_gram.to(dtype))
        if n > 0:
            put(f"{module}.grads", result.grads[module].to(torch.float32))
    metadata = {
        FORMAT_KEY: FORMAT_VERSION,
        SAMPLES_KEY: json.dumps({"rows": n, "tokens": result.tokens, "probes": result.probes, "seed": result.seed}),
    }
    if result.aliases:
        metadata[ALIASES_KEY] = json.dumps(dict(sorted(result.aliases.items())), sort_keys=True)
    if result.out_grams:
        metadata[PROBES_KEY] = str(result.probes)
        metadata[OBJECTIVE_KEY] = result.objective or ""
    return tensors, metadata


def write_calibration(path: str, result: CaptureResult, source: str, stat_dtype: str = "f32") -> dict[str, torch.Tensor]:
    tensors, metadata = calibration_tensors(result, stat_dtype)
    metadata[SOURCE_KEY] = source
    atomic_write(path, lambda tmp: save_safetensors(tensors, tmp, metadata=metadata))
    return tensors


def read_calibration(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a calibration file (for checks and tests)."""
    try:
        with safe_open(path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:
        raise DeltaPlanError(f"{path}: not a readable safetensors file ({e})") from None
