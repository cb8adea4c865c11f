"""Measured end-to-end error of candidate models against the reference (fine-tuned) model,
over the held-out windows (N tokens, the same windows as every command given the same text,
samples, seq-len and seed).

Per candidate:
- `error` = ‖Y_candidate − Y_reference‖_F over all N tokens and d features of the last hidden
  state (after the final norm for causal LMs), in hidden-state units;
- `relative_error` = error / ‖Y_base − Y_reference‖_F with --base (normalization "base": 0 = the
  fine-tuned model, 1 = the base), else error / ‖Y_reference‖_F (normalization "reference");
- encoders: `mean_cosine` = mean over windows of cos(mean_t Y_candidate, mean_t Y_reference),
  mean-pooled over the window's positions;
- causal LMs: `perplexity` = exp of the mean negative log-likelihood of the text's next tokens
  (S·(L−1) predictions), and `mean_kl` = (1/N) Σ_t KL(p_reference,t ‖ p_candidate,t) in nats per
  token over all N positions.
The reference itself (and the base) are reported the same way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .candidates import Candidate
from .errors import DeltaPlanError
from .models import CAUSAL, LoadedModel
from .progress import progress
from .score import check_compatible


@dataclass
class FidelityRow:
    name: str
    path: str
    tokens: int
    error: float
    relative_error: float | None
    normalization: str
    mean_cosine: float | None = None
    perplexity: float | None = None
    mean_kl: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class _Sums:
    squared_error: float = 0.0
    reference_squared: float = 0.0
    cosine: float = 0.0
    nll: float = 0.0
    kl: float = 0.0


BATCH = 8  # windows per forward pass


class _Reference:
    """The reference model's outputs on the windows, computed once: the last hidden state is kept
    (in the model's dtype, S·L·d values); logits, too large to keep for a causal LM, are recomputed per batch."""

    def __init__(self, model: LoadedModel, windows: torch.Tensor):
        self.model, self.windows = model, windows
        with torch.no_grad():
            self.hidden = [model.final_outputs(windows[b:b + BATCH].to(model.device))[0].cpu()
                           for b in range(0, windows.shape[0], BATCH)]

    def logits(self, b: int) -> torch.Tensor | None:
        if self.model.kind != CAUSAL:
            return None
        with torch.no_grad():
            return self.model.final_outputs(self.windows[b:b + BATCH].to(self.model.device))[1]


def compare(reference: _Reference, other: LoadedModel | None, desc: str) -> _Sums:
    """Runs the windows through `other` (None: the reference itself) against the reference's outputs."""
    sums = _Sums()
    windows = reference.windows
    with torch.no_grad():
        for i, b in enumerate(progress(range(0, windows.shape[0], BATCH), total=(windows.shape[0] + BATCH - 1) // BATCH, desc=desc)):
            ids = windows[b:b + BATCH]
            y_ref = reference.hidden[i].double()
            z_ref = reference.logits(b)
            if other is None:
                y, z = y_ref, z_ref
            else:
                y, z = other.final_outputs(ids.to(other.device))
                z = z.to(z_ref.device) if z is not None else None
            y64 = y.double().cpu()
            sums.squared_error += float(((y64 - y_ref) ** 2).sum())
            sums.reference_squared += float((y_ref ** 2).sum())
            sums.cosine += float(torch.nn.functional.cosine_similarity(y64.mean(1), y_ref.mean(1), dim=-1).sum())
            if z is not None:
                logp = torch.log_softmax(z.double(), dim=-1)
                logp_ref = torch.log_softmax(z_ref.double(), dim=-1)
                targets = ids[:, 1:].to(logp.device)
                sums.nll -= float(logp[:, :-1].gather(-1, targets[..., None]).sum())
                sums.kl += float((logp_ref.exp() * (logp_ref - logp)).sum())
    return sums


def _row(name: str, path: str, sums: _Sums, normalizer: float, normalization: str, kind: str, S: int, L: int) -> FidelityRow:
    error = math.sqrt(sums.squared_error)
    row = FidelityRow(name=name, path=path, tokens=S * L, error=error,
                      relative_error=error / normalizer if normalizer > 0 else None, normalization=normalization)
    if kind == CAUSAL:
        row.perplexity = math.exp(sums.nll / (S * (L - 1)))
        row.mean_kl = sums.kl / (S * L)
    else:
        row.mean_cosine = sums.cosine / S
    return row


@dataclass
class FidelityReport:
    reference: FidelityRow
    base: FidelityRow | None
    candidates: list[FidelityRow]

    def to_json(self) -> dict:
        return {"reference": self.reference.to_json(), "base": self.base.to_json() if self.base else None,
                "normalization": self.reference.normalization,
                "candidates": [c.to_json() for c in self.candidates]}


def fidelity(reference: LoadedModel, windows: torch.Tensor, candidates: list[Candidate], load, base_dir: str | None = None) -> FidelityReport:
    """`load(directory)` loads a candidate or the base the way the reference was loaded."""
    S, L = windows.shape
    kind = reference.kind
    ref = _Reference(reference, windows)
    own = compare(ref, None, "reference")
    base_row = None
    if base_dir is not None:
        base = load(base_dir)
        check_compatible(reference, base, "--base")
        base_sums = compare(ref, base, "base")
        del base
        normalizer, normalization = math.sqrt(base_sums.squared_error), "base"
        if normalizer == 0.0:
            raise DeltaPlanError(f"--base {base_dir} gives the same last hidden state as {reference.directory} on this "
                                 "text; errors relative to the base are undefined")
        base_row = _row("(base)", base_dir, base_sums, normalizer, normalization, kind, S, L)
    else:
        normalizer, normalization = math.sqrt(own.reference_squared), "reference"
    rows = []
    for candidate in candidates:
        model = load(candidate.path)
        check_compatible(reference, model, f"candidate {candidate.name}")
        rows.append(_row(candidate.name, candidate.path, compare(ref, model, candidate.name),
                         normalizer, normalization, kind, S, L))
        del model
    return FidelityReport(_row("(reference)", reference.directory, own, normalizer, normalization, kind, S, L), base_row, rows)
