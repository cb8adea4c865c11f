"""A complete model directory: the base directory with named tensors replaced.

Every file of the base is copied byte for byte (config.json, tokenizer files, generation
config, ...), except the safetensors shards that hold a replaced tensor, which are rewritten
with the same tensor names, the replaced values and the other tensors unchanged, and the shard
metadata kept. PyTorch `.bin` weights are not copied (they would contradict the new tensors).
Replaced values are converted to the base tensor's dtype unless `keep_dtype`. The directory is
written beside `out` and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field

import torch

from .atomic import atomic_directory
from .checkpoint import Checkpoint, dtype_of, load_tensors, read_header, save_safetensors
from .errors import DeltaPlanError

_SKIPPED_PATTERNS = ("pytorch_model", "tf_model.h5", "flax_model.msgpack")
_SKIPPED_DIRECTORIES = (".git", ".cache")


@dataclass
class AssembleSummary:
    out: str
    replaced: int
    converted: int  # replaced tensors whose dtype was converted to the base's
    shards_rewritten: list[str] = field(default_factory=list)
    files_copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def read_replacements(base: Checkpoint, files: list[str]) -> dict[str, tuple[str, str]]:
    """name → (file, dtype code), after checking names, shapes and duplicates."""
    if not files:
        raise DeltaPlanError("--replace: give at least one safetensors file")
    found: dict[str, tuple[str, str]] = {}
    for path in files:
        records, _ = read_header(path)
        if not records:
            raise DeltaPlanError(f"--replace {path}: holds no tensors")
        for name, record in records.items():
            if name in found:
                raise DeltaPlanError(f"--replace: tensor {name} is in both {found[name][0]} and {path}")
            target = base.tensors.get(name)
            if target is None:
                raise DeltaPlanError(f"--replace {path}: tensor {name} is not in the base checkpoint {base.directory}")
            if record.shape != target.shape:
                raise DeltaPlanError(f"--replace {path}: tensor {name} has shape {list(record.shape)}, "
                                     f"the base's has {list(target.shape)}")
            if dtype_of(record.dtype).is_floating_point != dtype_of(target.dtype).is_floating_point:
                raise DeltaPlanError(f"--replace {path}: tensor {name} is {record.dtype}, the base's is {target.dtype}")
            found[name] = (path, record.dtype)
    return found


def _copy_tree(source: str, destination: str, skip: set[str], summary: AssembleSummary, prefix: str = "") -> None:
    for entry in sorted(os.listdir(source)):
        src = os.path.join(source, entry)
        rel = prefix + entry
        if rel in skip:
            continue
        if os.path.isdir(src):
            if entry in _SKIPPED_DIRECTORIES and not prefix:
                summary.skipped.append(rel + "/")
                continue
            os.mkdir(os.path.join(destination, entry))
            _copy_tree(src, os.path.join(destination, entry), skip, summary, rel + "/")
        elif os.path.isfile(src):
            if not prefix and entry.startswith(_SKIPPED_PATTERNS):
                summary.skipped.append(rel)
                continue
            shutil.copyfile(src, os.path.join(destination, entry))
            summary.files_copied.append(rel)


def assemble(base_dir: str, replace: list[str], out: str, keep_dtype: bool = False) -> AssembleSummary:
    base = Checkpoint.open(base_dir)
    replacements = read_replacements(base, replace)
    if not os.path.isfile(os.path.join(base_dir, "config.json")):
        raise DeltaPlanError(f"{base_dir}: no config.json; the base must be a Hugging Face model directory")
    by_shard: dict[str, list[str]] = {}
    for name in replacements:
        by_shard.setdefault(base.shard_of(name), []).append(name)
    summary = AssembleSummary(out=out, replaced=len(replacements), converted=0)
    total_size_change = 0
    with atomic_directory(out) as tmp:
        skip = set(by_shard)
        if base.index is not None:
            skip.add(base.index)
        _copy_tree(base_dir, tmp, skip, summary)
        for shard in base.shards:
            if shard not in by_shard:
                continue
            tensors = load_tensors(os.path.join(base_dir, shard))
            for name in by_shard[shard]:
                file, _ = replacements[name]
                value = load_tensors(file, [name])[name]
                if value.is_floating_point() and not torch.isfinite(value).all():
                    raise DeltaPlanError(f"--replace {file}: tensor {name} has NaN or infinite values")
                original = tensors[name]
                if value.dtype != original.dtype:
                    if keep_dtype:
                        total_size_change += value.numel() * (value.element_size() - original.element_size())
                    else:
                        value = value.to(original.dtype)
                        summary.converted += 1
                tensors[name] = value.contiguous()
            save_safetensors(tensors, os.path.join(tmp, shard), metadata=base.metadata.get(shard) or None)
            summary.shards_rewritten.append(shard)
            del tensors
        if base.index is not None:
            index_path = os.path.join(base_dir, base.index)
            if total_size_change:
                with open(index_path, encoding="utf-8") as f:
                    index = json.load(f)
                meta = index.setdefault("metadata", {})
                if isinstance(meta.get("total_size"), int):
                    meta["total_size"] += total_size_change
                with open(os.path.join(tmp, base.index), "w", encoding="utf-8") as f:
                    json.dump(index, f, indent=2)
                    f.write("\n")
            else:
                shutil.copyfile(index_path, os.path.join(tmp, base.index))
            summary.files_copied.append(base.index)
        _check_assembled(tmp, base, replacements)
    return summary


def _check_assembled(directory: str, base: Checkpoint, replacements: dict[str, tuple[str, str]]) -> None:
    """The new checkpoint has exactly the base's tensor names and shapes (a bug here is ours)."""
    new = Checkpoint.open(directory)
    if set(new.tensors) != set(base.tensors):
        raise RuntimeError("bug: the assembled checkpoint changed the tensor names")
    for name, record in new.tensors.items():
        if record.shape != base.tensors[name].shape:
            raise RuntimeError(f"bug: the assembled checkpoint changed the shape of {name}")
