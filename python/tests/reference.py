"""Independent recomputation of the captured statistics, for the tests.

Inputs come from forward hooks (not pre-hooks); output gradients are taken with respect to a
zero perturbation d added to each module's output (not with respect to the output tensor);
the model is called through its own forward (not DeltaPlan's final_outputs); probes are
re-drawn from the documented scheme with plain torch calls.
"""

from __future__ import annotations

import json

import torch


def model_outputs(model, kind, ids):
    """(last hidden state, logits) through the model's own forward, one call (causal LMs: the
    probes need the logits only)."""
    if kind == "causal-lm":
        return None, model(input_ids=ids, use_cache=False).logits
    return model(input_ids=ids).last_hidden_state, None


def draw_probe(kind, generator, hidden, logits):
    """Returns (scalar, sampled tokens or r)."""
    if kind == "causal-lm":
        z = logits[0]
        u = torch.rand(z.shape[0], generator=generator, dtype=torch.float64)
        cdf = torch.cumsum(torch.softmax(z.detach().double(), -1), -1)
        y = (cdf <= u[:, None]).sum(-1).clamp(max=z.shape[-1] - 1)
        return torch.log_softmax(z, -1)[torch.arange(z.shape[0]), y].sum(), y
    r = torch.randn(tuple(hidden[0].shape), generator=generator, dtype=torch.float64)
    return (r.to(hidden.dtype) * hidden[0]).sum(), r


def recompute(model, kind, windows, modules, probes, seed):
    """x[w][m]: [L, h_in]; g[w][p][m]: [L, h_out]; draws[w][p]: the probe's tokens or r."""
    named = dict(model.named_modules())
    generator = torch.Generator().manual_seed(seed)
    xs, gs, draws = [], [], []
    for w in range(windows.shape[0]):
        x, d = {}, {}
        handles = []
        for m in modules:
            def hook(module, args, output, m=m):
                x[m] = args[0].detach()[0].clone()
                d[m] = torch.zeros_like(output, requires_grad=True)
                return output + d[m]
            handles.append(named[m].register_forward_hook(hook))
        try:
            hidden, logits = model_outputs(model, kind, windows[w:w + 1])
        finally:
            for h in handles:
                h.remove()
        xs.append(x)
        per_probe, per_draw = [], []
        for _ in range(probes):
            s, draw = draw_probe(kind, generator, hidden, logits)
            grads = torch.autograd.grad(s, [d[m] for m in modules], retain_graph=True)
            per_probe.append({m: g[0].detach() for m, g in zip(modules, grads)})
            per_draw.append(draw)
        gs.append(per_probe)
        draws.append(per_draw)
    return xs, gs, draws


def check_contract(tensors: dict, metadata: dict) -> None:
    """The rules of Docs/calibration-format.md, checked on a written file."""
    assert metadata["deltaplan.calibration_format"] == "2"
    samples = json.loads(metadata["deltaplan.samples"])
    assert set(samples) == {"rows", "tokens", "probes", "seed"}
    aliases = json.loads(metadata.get("deltaplan.aliases", "{}"))
    entries = {k[:-len(".gram")] for k in tensors if k.endswith(".gram") and not k.endswith(".out_gram")}
    for target in aliases.values():
        assert target in entries
    for module in aliases:
        assert module not in entries
    n = samples["rows"]
    for e in entries:
        gram = tensors[f"{e}.gram"]
        assert gram.dtype in (torch.float32, torch.float64) and gram.dim() == 2 and gram.shape[0] == gram.shape[1]
        count = tensors[f"{e}.count"]
        assert count.dtype == torch.int64 and tuple(count.shape) == (1,) and int(count[0]) == samples["tokens"]
        if n > 0:
            inputs = tensors[f"{e}.inputs"]
            assert inputs.dtype == torch.float32 and tuple(inputs.shape) == (n, gram.shape[0])
    out_modules = {k[:-len(".out_gram")] for k in tensors if k.endswith(".out_gram")}
    if out_modules:
        assert int(metadata["deltaplan.probes"]) == samples["probes"] >= 1
        assert metadata["deltaplan.objective"] in ("hidden-gauss-newton", "next-token-fisher")
    for m in out_modules:
        entry = aliases.get(m, m)
        assert entry in entries
        if n > 0:
            grads = tensors[f"{m}.grads"]
            assert grads.dtype == torch.float32 and grads.shape[0] == n
            out = tensors[f"{m}.out_gram"]
            assert grads.shape[1] == out.shape[0]
    known = {".gram", ".count", ".inputs", ".out_gram", ".grads"}
    for k in tensors:
        assert any(k.endswith(s) for s in known), k
