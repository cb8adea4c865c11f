"""First-order prediction of each candidate's end-to-end error, from one forward-mode JVP.

For a candidate with weight errors E = W_candidate − W_model (every parameter that differs,
all at once), over the calibration windows (N tokens):

- `J` = Σ_t ‖δY_t‖², δY = J_f(E), the directional derivative of the last hidden state Y (after
  the final norm for causal LMs) along E, summed over all N tokens and d features: the
  first-order prediction of ‖Y_candidate − Y_model‖²_F, in squared hidden-state units;
- `predicted_error` = √J, in hidden-state units (fidelity's `error`);
- `predicted_relative_error` = √J / ‖Y_base − Y_model‖_F when a base is given (normalization
  "base": 0 = the model, 1 = as far as the base), else √J / ‖Y_model‖_F (normalization
  "reference"); fidelity's `relative_error` with the same normalization, text, samples,
  seq-len and seed is the measured counterpart;
- causal LMs: `predicted_mean_kl` = (1/N) Σ_t ½ δz_tᵀ (diag p_t − p_t p_tᵀ) δz_t in nats per token,
  with δz the JVP of the logits and p_t the model's next-token distribution: the second-order
  prediction of fidelity's `mean_kl` = (1/N) Σ_t KL(p_model,t ‖ p_candidate,t).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch.func import functional_call, jvp

from .candidates import Candidate, weight_differences
from .errors import DeltaPlanError
from .models import CAUSAL, ForwardModule, LoadedModel
from .progress import progress


@dataclass
class ScoreRow:
    name: str
    path: str
    modules: int  # linear modules whose weight differs
    tensors: int  # tensors that differ (linear weights and any other parameter)
    tokens: int
    J: float
    predicted_error: float
    predicted_relative_error: float | None
    normalization: str
    predicted_mean_kl: float | None

    def to_json(self) -> dict:
        return asdict(self)


def check_compatible(reference: LoadedModel, other: LoadedModel, role: str) -> None:
    if reference.kind != other.kind:
        phrase = {"causal-lm": "a causal LM", "encoder": "an encoder"}
        raise DeltaPlanError(f"{role} {other.directory} is {phrase[other.kind]}, {reference.directory} "
                             f"{phrase[reference.kind]}")
    a, b = reference.config, other.config
    for field in ("hidden_size", "vocab_size"):
        if getattr(a, field, None) != getattr(b, field, None):
            raise DeltaPlanError(f"{role} {other.directory}: config.json {field} is {getattr(b, field, None)}, "
                                 f"{reference.directory} has {getattr(a, field, None)}")


def reference_norm(loaded: LoadedModel, windows: torch.Tensor, base: LoadedModel | None) -> tuple[float, str]:
    """‖Y_base − Y_model‖_F (normalization "base") or ‖Y_model‖_F ("reference")."""
    total = 0.0
    with torch.no_grad():
        for w in progress(range(windows.shape[0]), total=windows.shape[0], desc="reference"):
            ids = windows[w:w + 1].to(loaded.device)
            y, _ = loaded.final_outputs(ids)
            if base is not None:
                yb, _ = base.final_outputs(ids.to(base.device))
                total += float(((yb.to(y.device).double() - y.double()) ** 2).sum())
            else:
                total += float((y.double() ** 2).sum())
    if base is not None and total == 0.0:
        raise DeltaPlanError(f"--base {base.directory} gives the same last hidden state as {loaded.directory} on this text; "
                             "errors relative to the base are undefined")
    return math.sqrt(total), ("base" if base is not None else "reference")


def jvp_outputs(loaded: LoadedModel, ids: torch.Tensor, differences: dict[str, torch.Tensor]):
    """(Y, δY, z, δz) for one window: the outputs and their derivatives along `differences`."""
    module = ForwardModule(loaded)
    params = dict(loaded.model.named_parameters())
    names = list(differences)
    primals = tuple(params[n].detach() for n in names)
    tangents = tuple(differences[n] for n in names)
    keys = [f"inner.{n}" for n in names]

    def f(*values):
        hidden, logits = functional_call(module, dict(zip(keys, values)), (ids,), tie_weights=True, strict=False)
        return (hidden, logits) if logits is not None else (hidden,)

    outputs, derivatives = jvp(f, primals, tangents)
    if loaded.kind == CAUSAL:
        return outputs[0], derivatives[0], outputs[1], derivatives[1]
    return outputs[0], derivatives[0], None, None


def score(loaded: LoadedModel, windows: torch.Tensor, candidates: list[Candidate], base: LoadedModel | None = None) -> list[ScoreRow]:
    if base is not None:
        check_compatible(loaded, base, "--base")
    norm, normalization = reference_norm(loaded, windows, base)
    S, L = windows.shape
    N = S * L
    rows = []
    for candidate in candidates:
        differences, tensors, modules = weight_differences(loaded, candidate)
        J = 0.0
        kl = 0.0
        if differences:
            for w in progress(range(S), total=S, desc=f"score {candidate.name}"):
                ids = windows[w:w + 1].to(loaded.device)
                _, dy, z, dz = jvp_outputs(loaded, ids, differences)
                J += float((dy.double() ** 2).sum())
                if z is not None:
                    p = torch.softmax(z.double(), dim=-1)
                    dz64 = dz.double()
                    kl += float(0.5 * ((p * dz64 * dz64).sum(-1) - (p * dz64).sum(-1) ** 2).sum())
        relative = math.sqrt(J) / norm if norm > 0 else None
        rows.append(ScoreRow(
            name=candidate.name, path=candidate.path, modules=modules, tensors=tensors, tokens=N, J=J,
            predicted_error=math.sqrt(J), predicted_relative_error=relative, normalization=normalization,
            predicted_mean_kl=kl / N if loaded.kind == CAUSAL else None))
    return rows
