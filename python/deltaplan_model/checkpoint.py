"""Reading safetensors checkpoints: one `model.safetensors`, or shards listed by
`model.safetensors.index.json`, and loose safetensors files of replacement tensors.

Every header is read and validated before any tensor is used; errors name the file and tensor.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from safetensors import safe_open

from .errors import DeltaPlanError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorRecord:
    """Where a tensor lives and what it is, from a safetensors header."""

    name: str
    file: str  # absolute path of the safetensors file
    dtype: str  # safetensors dtype code: "F32", "BF16", ...
    shape: tuple[int, ...]


def read_header(path: str) -> tuple[dict[str, TensorRecord], dict[str, str]]:
    """The tensors (name → record) and the `__metadata__` of one safetensors file."""
    if not os.path.isfile(path):
        raise DeltaPlanError(f"{path}: no such file")
    try:
        with safe_open(path, framework="pt") as f:
            records = {}
            for name in f.keys():
                s = f.get_slice(name)
                records[name] = TensorRecord(name, os.path.abspath(path), str(s.get_dtype()), tuple(int(d) for d in s.get_shape()))
            metadata = dict(f.metadata() or {})
    except DeltaPlanError:
        raise
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise DeltaPlanError(f"{path}: not a readable safetensors file ({e})") from None
    return records, metadata


def load_tensors(path: str, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Loads the named tensors (all when None) of one safetensors file, on the CPU."""
    try:
        with safe_open(path, framework="pt") as f:
            wanted = list(f.keys()) if names is None else names
            return {n: f.get_tensor(n) for n in wanted}
    except Exception as e:
        raise DeltaPlanError(f"{path}: could not read tensors ({e})") from None


class Checkpoint:
    """The safetensors weights of a Hugging Face model directory.

    `tensors` maps every tensor name to its record; `shards` lists the weight files (relative
    names) in index order; `index` is the index file's name when the checkpoint is sharded."""

    def __init__(self, directory: str, tensors: dict[str, TensorRecord], shards: list[str], index: str | None,
                 metadata: dict[str, dict[str, str]]):
        self.directory = directory
        self.tensors = tensors
        self.shards = shards
        self.index = index
        self.metadata = metadata  # shard name → its __metadata__

    @classmethod
    def open(cls, directory: str) -> "Checkpoint":
        if not os.path.isdir(directory):
            raise DeltaPlanError(f"{directory}: not a directory")
        index_path = os.path.join(directory, INDEX_FILE)
        single_path = os.path.join(directory, SINGLE_FILE)
        if os.path.isfile(index_path):
            try:
                with open(index_path, encoding="utf-8") as f:
                    index = json.load(f)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise DeltaPlanError(f"{index_path}: not valid JSON ({e})") from None
            weight_map = index.get("weight_map") if isinstance(index, dict) else None
            if not isinstance(weight_map, dict) or not weight_map:
                raise DeltaPlanError(f"{index_path}: field \"weight_map\" must be a non-empty object of tensor names to files")
            shards: list[str] = []
            for name, shard in weight_map.items():
                if not isinstance(shard, str) or os.path.basename(shard) != shard:
                    raise DeltaPlanError(f"{index_path}: weight_map[\"{name}\"] must be a file name in the same directory, got {shard!r}")
                if shard not in shards:
                    shards.append(shard)
            tensors: dict[str, TensorRecord] = {}
            metadata: dict[str, dict[str, str]] = {}
            for shard in shards:
                records, meta = read_header(os.path.join(directory, shard))
                metadata[shard] = meta
                for name, record in records.items():
                    if name in tensors:
                        raise DeltaPlanError(f"{directory}: tensor {name} is in both {os.path.basename(tensors[name].file)} and {shard}")
                    tensors[name] = record
            for name, shard in weight_map.items():
                record = tensors.get(name)
                if record is None or os.path.basename(record.file) != shard:
                    raise DeltaPlanError(f"{index_path}: weight_map says {name} is in {shard}, but {shard} has no tensor of that name")
            for name, record in tensors.items():
                if name not in weight_map:
                    raise DeltaPlanError(f"{index_path}: {os.path.basename(record.file)} holds {name}, which the weight_map does not list")
            return cls(directory, tensors, shards, INDEX_FILE, metadata)
        if os.path.isfile(single_path):
            records, meta = read_header(single_path)
            return cls(directory, records, [SINGLE_FILE], None, {SINGLE_FILE: meta})
        raise DeltaPlanError(f"{directory}: no safetensors weights ({SINGLE_FILE} or {INDEX_FILE})")

    def shard_of(self, name: str) -> str:
        return os.path.basename(self.tensors[name].file)

    def load(self, names: list[str]) -> dict[str, torch.Tensor]:
        """Loads the named tensors, grouped by shard."""
        by_file: dict[str, list[str]] = {}
        for n in names:
            by_file.setdefault(self.tensors[n].file, []).append(n)
        out: dict[str, torch.Tensor] = {}
        for path, group in by_file.items():
            out.update(load_tensors(path, group))
        return out


def dtype_of(code: str) -> torch.dtype:
    """The torch dtype of a safetensors dtype code."""
    table = {
        "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
        "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
        "BOOL": torch.bool,
    }
    if code not in table:
        raise DeltaPlanError(f"safetensors dtype {code} is not supported")
    return table[code]


def save_safetensors(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file` with a canonical header: the library writes the metadata in
    hash-map order, which differs from run to run; here the header's keys (tensors and metadata)
    are sorted, so the same tensors and metadata always give the same bytes. The data section and
    its offsets are the library's (tensors ordered by dtype size, then name)."""
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        f.write(raw[8 + n:])
