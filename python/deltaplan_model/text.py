"""Calibration text → fixed-length token windows (no padding anywhere).

Documents: a `.jsonl` file gives one document per line (its string field "text"); any other
file is plain UTF-8 text whose paragraphs (separated by blank lines) are the documents.
The documents are tokenized without special tokens and concatenated into one stream, joined by
the end-of-sequence token for causal LMs or the separator token for encoders (when the
tokenizer has one). The stream is cut into consecutive chunks of `seq_len − |prefix| − |suffix|`
tokens, where prefix/suffix are the special tokens the tokenizer adds around a text (e.g.
`<s>`, or `[CLS]` … `[SEP]`); `samples` chunks are chosen uniformly without replacement with
`numpy.random.default_rng(seed)`, kept in stream order, and each is wrapped as
prefix + chunk + suffix. The same (text, samples, seq_len, seed) gives the same windows in
every command.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from .errors import DeltaPlanError
from .models import CAUSAL


def read_documents(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise DeltaPlanError(f"--text {path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            content = f.read()
    except UnicodeDecodeError as e:
        raise DeltaPlanError(f"--text {path}: not UTF-8 text ({e})") from None
    except OSError as e:
        raise DeltaPlanError(f"--text {path}: cannot be read ({e.strerror})") from None
    if path.endswith(".jsonl"):
        docs = []
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DeltaPlanError(f"--text {path}:{number}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise DeltaPlanError(f"--text {path}:{number}: needs a string field \"text\"")
            if record["text"].strip():
                docs.append(record["text"])
    else:
        docs = [p.strip() for p in content.replace("\r\n", "\n").split("\n\n") if p.strip()]
    if not docs:
        raise DeltaPlanError(f"--text {path}: no text")
    return docs


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The token ids the tokenizer puts before and after a text when it adds special tokens."""
    probe = "hello world"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    return [], []


def token_stream(tokenizer, docs: list[str], kind: str) -> list[int]:
    separator = tokenizer.eos_token_id if kind == CAUSAL else tokenizer.sep_token_id
    stream: list[int] = []
    encoded = tokenizer(docs, add_special_tokens=False)["input_ids"]
    for i, ids in enumerate(encoded):
        if i > 0 and separator is not None:
            stream.append(int(separator))
        stream.extend(int(t) for t in ids)
    return stream


def make_windows(tokenizer, path: str, samples: int, seq_len: int, seed: int, kind: str,
                 max_positions: int | None = None) -> torch.Tensor:
    """`samples` windows of `seq_len` tokens, as a LongTensor [samples, seq_len]."""
    if samples < 1:
        raise DeltaPlanError(f"--samples must be at least 1, got {samples}")
    prefix, suffix = special_affixes(tokenizer)
    minimum = len(prefix) + len(suffix) + (2 if kind == CAUSAL else 1)
    if seq_len < minimum:
        raise DeltaPlanError(f"--seq-len must be at least {minimum} for this tokenizer, got {seq_len}")
    if max_positions is not None and seq_len > max_positions:
        raise DeltaPlanError(f"--seq-len {seq_len} exceeds the model's max_position_embeddings ({max_positions})")
    stream = token_stream(tokenizer, read_documents(path), kind)
    chunk = seq_len - len(prefix) - len(suffix)
    available = len(stream) // chunk
    if available < samples:
        raise DeltaPlanError(f"--text {path}: {len(stream)} tokens make only {available} windows of {seq_len} tokens, "
                             f"{samples} asked for; lower --samples or --seq-len, or give more text")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(available, size=samples, replace=False))
    rows = [prefix + stream[int(c) * chunk:(int(c) + 1) * chunk] + suffix for c in chosen]
    return torch.tensor(rows, dtype=torch.long)
