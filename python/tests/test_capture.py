"""capture: every statistic against an independent float64 recomputation."""

from __future__ import annotations

import json

import pytest
import torch

from deltaplan_model.capture import CaptureOptions, capture, draw_pairs
from deltaplan_model.models import load_model
from deltaplan_model.selection import Selection
from deltaplan_model.text import make_windows

from reference import recompute

S, L, P = 3, 12, 3


def assert_close(actual, expected, rel=1e-12):
    actual, expected = actual.double(), expected.double()
    scale = float(expected.abs().max()) or 1.0
    err = float((actual - expected).abs().max())
    assert err <= rel * scale, f"max error {err:.3e} > {rel:.0e} × {scale:.3e}"


@pytest.fixture(scope="module", params=["llama", "bert"])
def setup(request, models):
    loaded = load_model(models[f"{request.param}_ft"], dtype="float64")
    windows = make_windows(loaded.tokenizer, models["text"], S, L, 5, loaded.kind, loaded.max_positions())
    modules = Selection().select(loaded.model)
    result = capture(loaded, windows, modules, CaptureOptions(probes=P, rows=10_000, seed=5))
    xs, gs, draws = recompute(loaded.model, loaded.kind, windows, modules, P, seed=5)
    return request.param, loaded, windows, modules, result, xs, gs, draws


def test_selection_and_aliases(setup):
    name, loaded, _, modules, result, *_ = setup
    if name == "llama":
        assert len(modules) == 14
        for layer in (0, 1):
            a = f"model.layers.{layer}."
            assert result.aliases[a + "self_attn.k_proj"] == a + "self_attn.q_proj"
            assert result.aliases[a + "self_attn.v_proj"] == a + "self_attn.q_proj"
            assert result.aliases[a + "mlp.up_proj"] == a + "mlp.gate_proj"
        assert len(result.aliases) == 6
        assert set(result.grams) == {f"model.layers.{i}.{m}" for i in (0, 1) for m in
                                     ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj")}
    else:
        assert len(modules) == 12
        for layer in (0, 1):
            a = f"encoder.layer.{layer}.attention.self."
            assert result.aliases == {**result.aliases, a + "key": a + "query", a + "value": a + "query"}
        assert len(result.aliases) == 4
    assert not any("lm_head" in m or "embed" in m or "pooler" in m for m in modules)


def test_aliased_inputs_are_really_identical(setup):
    _, _, _, _, result, xs, *_ = setup
    for module, target in result.aliases.items():
        for x in xs:
            assert torch.equal(x[module], x[target])


def test_grams_and_count(setup):
    _, _, _, modules, result, xs, *_ = setup
    assert result.tokens == S * L
    for module in modules:
        entry = result.entry(module)
        H = sum(x[module].T @ x[module] for x in xs)
        assert_close(result.grams[entry], H)


@pytest.mark.parametrize("diagonal", [False, True])
def test_output_grams(setup, models, diagonal):
    name, loaded, windows, modules, result, xs, gs, _ = setup
    if diagonal:
        result = capture(loaded, windows, modules, CaptureOptions(probes=P, rows=0, seed=5, diagonal_output=True))
    for module in modules:
        G = sum(g[module].T @ g[module] for per_probe in gs for g in per_probe) / P
        assert_close(result.out_grams[module], torch.diagonal(G) if diagonal else G)
        assert result.out_grams[module].shape == ((G.shape[0],) if diagonal else G.shape)


def test_pairs_cover_everything_when_rows_exceed_pairs(setup):
    _, _, _, _, result, *_ = setup
    assert torch.equal(result.pairs, torch.arange(S * L * P))


def test_paired_rows(setup):
    _, _, _, modules, result, xs, gs, _ = setup
    for module in modules:
        entry = result.entry(module)
        for i, k in enumerate(result.pairs.tolist()):
            t, p = divmod(k, P)
            w, pos = divmod(t, L)
            assert_close(result.inputs[entry][i], xs[w][module][pos])
            assert_close(result.grads[module][i], gs[w][p][module][pos])


def test_sampled_pairs_are_shared_and_seeded(setup):
    name, loaded, windows, modules, _, xs, gs, _ = setup
    result = capture(loaded, windows, modules, CaptureOptions(probes=P, rows=20, seed=5))
    pairs = result.pairs
    assert pairs.numel() == 20 and torch.equal(pairs, torch.unique(pairs)) and int(pairs.max()) < S * L * P
    assert torch.equal(pairs, draw_pairs(S * L, P, 20, 5))
    assert not torch.equal(pairs, draw_pairs(S * L, P, 20, 6))
    for module in modules:
        entry = result.entry(module)
        assert result.inputs[entry].shape[0] == 20 and result.grads[module].shape[0] == 20
        for i, k in enumerate(pairs.tolist()):
            t, p = divmod(k, P)
            w, pos = divmod(t, L)
            assert_close(result.inputs[entry][i], xs[w][module][pos])
            assert_close(result.grads[module][i], gs[w][p][module][pos])


def test_per_token_form_from_all_pairs(setup):
    """(N/n) Σ_i (g_iᵀ E x_i)² with n = all pairs equals (1/P) Σ_p Σ_t (g_{t,p}ᵀ E x_t)²."""
    _, _, _, modules, result, xs, gs, _ = setup
    gen = torch.Generator().manual_seed(9)
    N, n = result.tokens, result.rows
    for module in (modules[1], modules[-1]):  # an aliased module and an entry
        entry = result.entry(module)
        h_out, h_in = result.grads[module].shape[1], result.inputs[entry].shape[1]
        E = torch.randn(h_out, h_in, generator=gen, dtype=torch.float64)
        estimate = (N / n) * (((result.grads[module] @ E) * result.inputs[entry]).sum(1) ** 2).sum()
        exact = sum((((gs[w][p][module] @ E) * xs[w][module]).sum(1) ** 2).sum()
                    for w in range(S) for p in range(P)) / P
        assert abs(float(estimate - exact)) <= 1e-12 * float(exact)


def test_gradients_are_the_probe_derivatives(setup):
    """Σ_t g_{t,p}ᵀ E x_t is the derivative of probe p's scalar along W → W + εE (central difference,
    the probe's draw held fixed)."""
    name, loaded, windows, modules, result, xs, gs, draws = setup
    module = modules[2]
    weight = dict(loaded.model.named_modules())[module].weight
    E = torch.randn(weight.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    w, p = 1, 2
    ids = windows[w:w + 1]
    draw = draws[w][p]

    def s():
        if name == "llama":
            logp = torch.log_softmax(loaded.model(input_ids=ids, use_cache=False).logits[0], -1)
            return float(logp[torch.arange(L), draw].sum())
        return float((draw * loaded.model(input_ids=ids).last_hidden_state[0]).sum())

    h = 1e-5
    original = weight.detach().clone()
    with torch.no_grad():
        weight.copy_(original + h * E)
        plus = s()
        weight.copy_(original - h * E)
        minus = s()
        weight.copy_(original)
    fd = (plus - minus) / (2 * h)
    analytic = float(((gs[w][p][module] @ E) * xs[w][module]).sum())
    lib = float(((result.grads[module] @ E) * result.inputs[result.entry(module)]).sum(1)
                [(result.pairs // P >= w * L) & (result.pairs // P < (w + 1) * L) & (result.pairs % P == p)].sum())
    assert abs(analytic - fd) <= 1e-7 * max(1.0, abs(fd))
    assert abs(lib - analytic) <= 1e-12 * max(1.0, abs(analytic))


def test_probe_expectation_matches_the_quadratic_loosely(models):
    """E_probe[(Σ_t g_tᵀ E x_t)²] = ‖J E‖² (encoders) or Σ_t δz_tᵀ(diag p − p pᵀ)δz_t (causal LMs):
    a statistical check, 300 probes (relative standard deviation about 8%)."""
    from deltaplan_model.score import jvp_outputs

    for which in ("bert_ft", "llama_ft"):
        loaded = load_model(models[which], dtype="float64")
        windows = make_windows(loaded.tokenizer, models["text"], 1, 16, 1, loaded.kind)
        module = "encoder.layer.0.intermediate.dense" if which == "bert_ft" else "model.layers.0.self_attn.v_proj"
        probes = 300
        result = capture(loaded, windows, [module], CaptureOptions(probes=probes, rows=16 * probes, seed=2))
        weight = dict(loaded.model.named_parameters())[module + ".weight"]
        E = torch.randn(weight.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        per_pair = ((result.grads[module] @ E) * result.inputs[module]).sum(1)
        per_probe = torch.zeros(probes, dtype=torch.float64).index_add_(0, result.pairs % probes, per_pair)
        sampled = float((per_probe ** 2).mean())
        _, dy, z, dz = jvp_outputs(loaded, windows, {module + ".weight": E})
        if z is None:
            expected = float((dy ** 2).sum())
        else:
            prob = torch.softmax(z[0], -1)
            expected = float(((prob * dz[0] ** 2).sum(-1) - (prob * dz[0]).sum(-1) ** 2).sum())
        assert abs(sampled / expected - 1) < 0.3, (which, sampled, expected)


def test_no_sensitivities(setup):
    _, loaded, windows, modules, result, xs, *_ = setup
    plain = capture(loaded, windows, modules, CaptureOptions(sensitivities=False, rows=7, seed=5))
    assert plain.out_grams == {} and plain.grads == {} and plain.probes == 0 and plain.objective is None
    assert torch.equal(plain.pairs, draw_pairs(S * L, 0, 7, 5)) and int(plain.pairs.max()) < S * L
    for entry, gram in plain.grams.items():
        assert_close(gram, result.grams[entry])
        for i, t in enumerate(plain.pairs.tolist()):
            w, pos = divmod(t, L)
            assert_close(plain.inputs[entry][i], xs[w][entry][pos])


def test_include_exclude(models):
    loaded = load_model(models["llama_base"], tokenizer=False)
    assert Selection(exclude=[r"\.mlp\."]).select(loaded.model) == [
        f"model.layers.{i}.self_attn.{m}_proj" for i in (0, 1) for m in "qkvo"]
    assert Selection(include=[r"lm_head\.weight$", r"layers\.1\.mlp\.down"]).select(loaded.model) == [
        "model.layers.1.mlp.down_proj", "lm_head"]
