"""Candidates for `score` and `fidelity`: `NAME=PATH` or `PATH` (named after the path)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .checkpoint import Checkpoint, dtype_of, load_tensors, read_header
from .errors import DeltaPlanError
from .models import LoadedModel


@dataclass(frozen=True)
class Candidate:
    name: str
    path: str


def parse_candidate(argument: str) -> Candidate:
    if "=" in argument and not os.path.exists(argument):
        name, path = argument.split("=", 1)
        if not name or not path:
            raise DeltaPlanError(f"--candidates {argument!r}: expected NAME=PATH or PATH")
        return Candidate(name, path)
    return Candidate(os.path.basename(os.path.normpath(argument)) or argument, argument)


def parse_candidates(arguments: list[str]) -> list[Candidate]:
    candidates = [parse_candidate(a) for a in arguments]
    seen: set[str] = set()
    for c in candidates:
        if c.name in seen:
            raise DeltaPlanError(f"--candidates: the name {c.name!r} is used twice; name them NAME=PATH")
        seen.add(c.name)
    return candidates


def weight_differences(loaded: LoadedModel, candidate: Candidate) -> tuple[dict[str, torch.Tensor], int, int]:
    """E = W_candidate − W_model for every parameter that differs, keyed by the model's
    parameter name (tied copies resolved to the name `named_parameters` gives), in the model's
    dtype and device. Returns (E, differing tensors, differing linear modules).

    A candidate is a model directory (all its tensors, which must be exactly the model's) or a
    safetensors file of replaced tensors (each must exist in the model with the same shape)."""
    model = loaded.model
    path = candidate.path
    known = loaded.checkpoint.tensors
    if os.path.isdir(path):
        ck = Checkpoint.open(path)
        extra = sorted(set(ck.tensors) - set(known))
        missing = sorted(set(known) - set(ck.tensors))
        if extra:
            raise DeltaPlanError(f"candidate {candidate.name} ({path}): tensor {extra[0]} is not in {loaded.directory}")
        if missing:
            raise DeltaPlanError(f"candidate {candidate.name} ({path}): tensor {missing[0]} of {loaded.directory} is missing")
        groups = {}
        for name, record in ck.tensors.items():
            groups.setdefault(record.file, []).append(name)
        records = ck.tensors
    elif os.path.isfile(path):
        records, _ = read_header(path)
        for name in records:
            if name not in known:
                raise DeltaPlanError(f"candidate {candidate.name} ({path}): tensor {name} is not in {loaded.directory}")
        groups = {path: list(records)}
    else:
        raise DeltaPlanError(f"candidate {candidate.name}: {path} is neither a model directory nor a safetensors file")
    for name, record in records.items():
        if record.shape != known[name].shape:
            raise DeltaPlanError(f"candidate {candidate.name} ({path}): tensor {name} has shape {list(record.shape)}, "
                                 f"the model's has {list(known[name].shape)}")
        if not dtype_of(record.dtype).is_floating_point and dtype_of(known[name].dtype).is_floating_point:
            raise DeltaPlanError(f"candidate {candidate.name} ({path}): tensor {name} is {record.dtype}, not a float")

    params = dict(model.named_parameters(remove_duplicate=False))
    canonical = {id(p): n for n, p in model.named_parameters()}
    state = model.state_dict(keep_vars=True)
    linear_weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    differences: dict[str, torch.Tensor] = {}
    linear_count = 0
    with torch.no_grad():
        for file, names in groups.items():
            tensors = load_tensors(file, names)
            for name, value in tensors.items():
                if name in params:
                    current = params[name]
                    diff = value.to(device=loaded.device, dtype=current.dtype) - current
                    if not torch.isfinite(diff).all():
                        raise DeltaPlanError(f"candidate {candidate.name} ({path}): tensor {name} has NaN or infinite values")
                    if not bool(diff.any()):
                        continue
                    key = canonical[id(current)]
                    if key in differences:
                        if not torch.equal(differences[key], diff):
                            raise DeltaPlanError(f"candidate {candidate.name} ({path}): {name} is tied to {key} in the "
                                                 "model but the candidate gives them different values")
                        continue
                    differences[key] = diff
                    if name in linear_weights:
                        linear_count += 1
                elif name in state:
                    if not torch.equal(value.to(state[name].device), state[name].to(value.dtype)):
                        raise DeltaPlanError(f"candidate {candidate.name} ({path}): {name} is a buffer, not a parameter, "
                                             "and differs from the model's")
    return differences, len(differences), linear_count
