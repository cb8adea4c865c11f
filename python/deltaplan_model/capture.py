"""Calibration capture: per selected linear module y = W x (+ b), over N calibration tokens,

- H = Σ_t x_t x_tᵀ (accumulated in float64), the token count N, and n sampled input rows;
- G = (1/P) Σ_p Σ_t g_{t,p} g_{t,p}ᵀ (or its diagonal), where g_{t,p} = ∂s_p/∂y_t is the gradient
  of probe p's scalar s_p at the module's output, and the paired gradient rows.

Probes (one scalar per window and probe, P per window; a `torch.Generator` on the CPU seeded
with `seed` draws, for each window in order and each probe in order):
- encoders, objective `hidden-gauss-newton`: r = torch.randn((L, d), dtype=float64), and
  s = Σ_{t,k} r_{t,k} Y_{t,k} with Y the last hidden state;
- causal LMs, objective `next-token-fisher`: u = torch.rand(L, dtype=float64); at every position
  t the token y_t is the first index whose cumulative softmax(logits_t) (in float64) exceeds u_t
  (inverse-CDF sampling from the model's own next-token distribution), and
  s = Σ_t log softmax(logits_t)[y_t].

Pairs: with N = windows × L tokens (t = window·L + position) and P' = max(P, 1), the
n = min(rows, N·P') pairs are the flat indices k = t·P' + p drawn without replacement by
`numpy.random.default_rng([seed, 1]).choice(N·P', n, replace=False)` and sorted; row i of every
module's `.inputs` is x_{t_i} and of its `.grads` is g_{t_i, p_i}.

Sharing: modules whose forward receives the very same input tensor object (q/k/v, gate/up)
share one entry; the first of them in module order keeps the statistics, the others alias it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from .errors import DeltaPlanError
from .models import CAUSAL, LoadedModel
from .progress import progress

HIDDEN_GAUSS_NEWTON = "hidden-gauss-newton"
NEXT_TOKEN_FISHER = "next-token-fisher"


@dataclass
class CaptureOptions:
    probes: int = 4
    rows: int = 2048
    diagonal_output: bool = False
    sensitivities: bool = True
    seed: int = 0


@dataclass
class CaptureResult:
    modules: list[str]
    aliases: dict[str, str]  # module → the module whose H / count / inputs it uses
    grams: dict[str, torch.Tensor]  # entry → H, float64 [h_in, h_in]
    tokens: int  # N
    inputs: dict[str, torch.Tensor]  # entry → [n, h_in]
    out_grams: dict[str, torch.Tensor] = field(default_factory=dict)  # module → G, float64 [h_out, h_out] or [h_out]
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # module → [n, h_out]
    pairs: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    probes: int = 0
    objective: str | None = None
    seed: int = 0
    windows: int = 0
    seq_len: int = 0

    @property
    def rows(self) -> int:
        return int(self.pairs.numel())

    def entry(self, module: str) -> str:
        return self.aliases.get(module, module)


def objective_of(loaded: LoadedModel) -> str:
    return NEXT_TOKEN_FISHER if loaded.kind == CAUSAL else HIDDEN_GAUSS_NEWTON


def draw_pairs(tokens: int, probes: int, rows: int, seed: int) -> torch.Tensor:
    """The sorted flat pair indices k = t·max(P, 1) + p (see the module documentation)."""
    per_token = max(probes, 1)
    total = tokens * per_token
    n = min(max(rows, 0), total)
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    chosen = np.random.default_rng([seed, 1]).choice(total, size=n, replace=False)
    return torch.from_numpy(np.sort(chosen).astype(np.int64))


def probe_scalar(kind: str, generator: torch.Generator, hidden: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
    """Draws one probe from `generator` and returns its scalar (see the module documentation)."""
    if kind == CAUSAL:
        z = logits[0]
        u = torch.rand(z.shape[0], generator=generator, dtype=torch.float64).to(z.device)
        cdf = torch.softmax(z.detach().double(), dim=-1).cumsum(-1)
        y = torch.searchsorted(cdf, u[:, None], right=True).squeeze(-1).clamp_(max=z.shape[-1] - 1)
        logp = torch.log_softmax(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1)
        return logp.gather(-1, y[:, None]).sum()
    y = hidden[0]
    r = torch.randn(tuple(y.shape), generator=generator, dtype=torch.float64).to(device=y.device, dtype=y.dtype)
    return (r * y).sum()


class _State:
    """Per-forward bookkeeping of the hooks."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self.seen: dict[int, tuple[torch.Tensor, str]] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.sharing: dict[str, str] = {}

    def reset(self):
        self.calls.clear()
        self.seen.clear()
        self.outputs.clear()
        self.sharing.clear()


def capture(loaded: LoadedModel, windows: torch.Tensor, modules: list[str], options: CaptureOptions) -> CaptureResult:
    """Runs the windows [S, L] through the model and accumulates the statistics of `modules`."""
    if not modules:
        raise DeltaPlanError("no module is selected; check --include / --exclude")
    if options.sensitivities and options.probes < 1:
        raise DeltaPlanError(f"--probes must be at least 1, got {options.probes}")
    if options.rows < 0:
        raise DeltaPlanError(f"--rows must be at least 0, got {options.rows}")
    model = loaded.model
    named = dict(model.named_modules())
    device = loaded.device
    S, L = windows.shape
    N = S * L
    sens = options.sensitivities
    P = options.probes if sens else 0
    per_token = max(P, 1)
    pairs = draw_pairs(N, P, options.rows, options.seed)
    n = pairs.numel()
    pair_token = pairs // per_token
    pair_probe = pairs % per_token
    rows_dtype = torch.float64 if loaded.dtype == torch.float64 else torch.float32

    grams: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}
    out_grams: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] | None = None  # fixed after the first window
    state = _State()
    window_rows: dict[str, torch.Tensor] = {}  # for the current window: row indices, positions

    def pre_hook(name: str):
        def hook(module: nn.Module, args, kwargs):
            x = args[0] if args else kwargs.get("input")
            state.calls[name] = state.calls.get(name, 0) + 1
            if state.calls[name] > 1:
                return None
            found = state.seen.get(id(x))
            if found is not None and found[0] is x:
                state.sharing[name] = found[1]
                return None
            state.seen[id(x)] = (x, name)
            if aliases is not None and name in aliases:
                return None  # will be reported as inconsistent sharing below
            h_in = module.in_features
            x2 = x.detach().reshape(-1, h_in)
            if x2.shape[0] != L:
                raise DeltaPlanError(f"module {name} received {x2.shape[0]} input rows for a window of {L} tokens; "
                                     "per-token statistics need one row per token")
            x64 = x2.double()
            if name not in grams:
                grams[name] = torch.zeros(h_in, h_in, dtype=torch.float64, device=device)
                inputs[name] = torch.zeros(n, h_in, dtype=rows_dtype)
            grams[name].addmm_(x64.T, x64)
            if window_rows["index"].numel():
                inputs[name][window_rows["index"]] = x2[window_rows["position"]].to("cpu", rows_dtype)
            return None
        return hook

    def forward_hook(name: str):
        def hook(module: nn.Module, args, output):
            if sens and state.calls.get(name) == 1:
                state.outputs[name] = output
            return None
        return hook

    def make_leaf_require_grad(module, args, output):
        return output.requires_grad_(True) if not output.requires_grad else output

    handles = []
    try:
        for name in modules:
            m = named.get(name)
            if not isinstance(m, nn.Linear):
                raise DeltaPlanError(f"module {name} is not a linear layer of {loaded.spec.class_name}")
            handles.append(m.register_forward_pre_hook(pre_hook(name), with_kwargs=True))
            handles.append(m.register_forward_hook(forward_hook(name)))
        if sens:
            embeddings = model.get_input_embeddings()
            if not isinstance(embeddings, nn.Module):
                raise DeltaPlanError(f"{loaded.directory}: {loaded.spec.class_name} has no input embeddings")
            handles.append(embeddings.register_forward_hook(make_leaf_require_grad))
        generator = torch.Generator(device="cpu").manual_seed(options.seed)
        kind = loaded.kind
        for w in progress(range(S), total=S, desc="capture"):
            state.reset()
            in_window = (pair_token >= w * L) & (pair_token < (w + 1) * L)
            index = torch.nonzero(in_window).flatten()
            window_rows["index"] = index
            window_rows["position"] = (pair_token[index] - w * L).to(device)
            ids = windows[w:w + 1].to(device)
            with torch.enable_grad() if sens else torch.no_grad():
                hidden, logits = loaded.final_outputs(ids)
            for name in modules:
                calls = state.calls.get(name, 0)
                if calls == 0:
                    raise DeltaPlanError(f"module {name} never ran on the way to the model's final output "
                                         "(a head outside the base model?); exclude it with --exclude")
                if calls > 1:
                    raise DeltaPlanError(f"module {name} ran {calls} times in one forward pass; "
                                         "per-token statistics need exactly one call per token")
            sharing = {m: state.sharing[m] for m in modules if m in state.sharing}
            if aliases is None:
                aliases = sharing
            elif sharing != aliases:
                raise DeltaPlanError("modules shared their inputs differently from one window to the next; "
                                     "input sharing cannot be established")
            if not sens:
                continue
            outs = [state.outputs[m] for m in modules]
            for p in range(P):
                s = probe_scalar(kind, generator, hidden, logits)
                gs = torch.autograd.grad(s, outs, retain_graph=p < P - 1, allow_unused=True)
                probe_rows = index[pair_probe[index] == p]
                probe_positions = (pair_token[probe_rows] - w * L).to(device)
                for name, y, g in zip(modules, outs, gs):
                    h_out = y.shape[-1]
                    g2 = (torch.zeros_like(y) if g is None else g).reshape(-1, h_out)
                    g64 = g2.double()
                    if name not in out_grams:
                        shape = (h_out,) if options.diagonal_output else (h_out, h_out)
                        out_grams[name] = torch.zeros(shape, dtype=torch.float64, device=device)
                        grads[name] = torch.zeros(n, h_out, dtype=rows_dtype)
                    if options.diagonal_output:
                        out_grams[name].add_((g64 * g64).sum(0))
                    else:
                        out_grams[name].addmm_(g64.T, g64)
                    if probe_rows.numel():
                        grads[name][probe_rows] = g2[probe_positions].to("cpu", rows_dtype)
            del outs, hidden, logits
            state.reset()
    finally:
        for h in handles:
            h.remove()
        state.reset()

    for name in out_grams:
        out_grams[name] = (out_grams[name] / P).cpu()
    return CaptureResult(
        modules=list(modules), aliases=dict(aliases or {}), grams={k: v.cpu() for k, v in grams.items()}, tokens=N,
        inputs=inputs, out_grams=out_grams, grads=grads, pairs=pairs, probes=P,
        objective=objective_of(loaded) if sens else None, seed=options.seed, windows=S, seq_len=L)
