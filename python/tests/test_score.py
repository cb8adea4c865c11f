"""score: the JVP prediction against a central finite difference of the model's own forward, in
float64, and against fidelity's measurement to first order."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from deltaplan_model.candidates import Candidate
from deltaplan_model.checkpoint import Checkpoint
from deltaplan_model.cli import main
from deltaplan_model.models import load_model
from deltaplan_model.score import score
from deltaplan_model.text import make_windows

S, L = 2, 10
CHANGED = {
    "llama": ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
              "model.layers.1.mlp.down_proj.weight", "model.layers.0.post_attention_layernorm.weight"],
    "bert": ["encoder.layer.0.attention.self.value.weight", "encoder.layer.1.intermediate.dense.weight",
             "encoder.layer.1.output.LayerNorm.bias"],
}


def outputs(model, kind, ids):
    """(last hidden state, logits) through the model's own modules."""
    if kind == "causal-lm":
        hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
        return hidden, model(input_ids=ids, use_cache=False).logits
    return model(input_ids=ids).last_hidden_state, None


def finite_difference(model, kind, windows, E, h=1e-5):
    """Σ‖δY‖², Σ_t ½ δzᵀ(diag p − p pᵀ)δz and δY per window, from (f(W+hE) − f(W−hE)) / 2h."""
    params = dict(model.named_parameters())
    J, kl = 0.0, 0.0
    with torch.no_grad():
        originals = {n: params[n].detach().clone() for n in E}
        for w in range(windows.shape[0]):
            ids = windows[w:w + 1]
            for n in E:
                params[n].copy_(originals[n] + h * E[n])
            y_plus, z_plus = outputs(model, kind, ids)
            for n in E:
                params[n].copy_(originals[n] - h * E[n])
            y_minus, z_minus = outputs(model, kind, ids)
            for n in E:
                params[n].copy_(originals[n])
            dy = (y_plus - y_minus) / (2 * h)
            J += float((dy ** 2).sum())
            if kind == "causal-lm":
                _, z = outputs(model, kind, ids)
                dz = (z_plus - z_minus)[0] / (2 * h)
                p = torch.softmax(z[0], -1)
                kl += float(0.5 * ((p * dz ** 2).sum(-1) - (p * dz).sum(-1) ** 2).sum())
    return J, kl


def replacement(models, which, scale=1.0, seed=0):
    """A candidate file: the fine-tuned model with E added to some tensors, and E."""
    ck = Checkpoint.open(models[f"{which}_ft"])
    tensors = ck.load(CHANGED[which])
    gen = torch.Generator().manual_seed(seed)
    E = {n: scale * 0.05 * torch.randn(t.shape, generator=gen, dtype=torch.float64) for n, t in tensors.items()}
    return {n: (tensors[n].double() + E[n]) for n in tensors}, E


@pytest.mark.parametrize("which", ["llama", "bert"])
def test_score_matches_central_difference(models, tmp_path, which):
    loaded = load_model(models[f"{which}_ft"], dtype="float64")
    windows = make_windows(loaded.tokenizer, models["text"], S, L, 1, loaded.kind)
    new, _ = replacement(models, which)
    path = str(tmp_path / "candidate.safetensors")
    save_file(new, path)
    params = dict(loaded.model.named_parameters())
    E = {n: new[n] - params[n].detach() for n in new}  # E as the model sees it (F64 file, F64 model)
    J_fd, kl_fd = finite_difference(loaded.model, loaded.kind, windows, E)

    base = load_model(models[f"{which}_base"], dtype="float64", tokenizer=False)
    [row] = score(loaded, windows, [Candidate("c", path)], base)
    assert row.modules == sum(n.endswith("proj.weight") or n.endswith("dense.weight") or n.endswith("value.weight")
                              for n in CHANGED[which])
    assert row.tensors == len(CHANGED[which])
    assert row.tokens == S * L
    assert abs(row.J - J_fd) <= 1e-7 * J_fd
    assert row.predicted_error == pytest.approx(math.sqrt(J_fd), rel=1e-7)
    with torch.no_grad():
        base_norm = math.sqrt(sum(float(((outputs(base.model, base.kind, windows[w:w + 1])[0]
                                          - outputs(loaded.model, loaded.kind, windows[w:w + 1])[0]) ** 2).sum())
                                  for w in range(S)))
    assert row.normalization == "base"
    assert row.predicted_relative_error == pytest.approx(math.sqrt(J_fd) / base_norm, rel=1e-7)
    if which == "llama":
        assert abs(row.predicted_mean_kl - kl_fd / (S * L)) <= 1e-7 * kl_fd / (S * L)
    else:
        assert row.predicted_mean_kl is None

    [plain] = score(loaded, windows, [Candidate("c", path)])
    with torch.no_grad():
        ref_norm = math.sqrt(sum(float((outputs(loaded.model, loaded.kind, windows[w:w + 1])[0] ** 2).sum())
                                 for w in range(S)))
    assert plain.normalization == "reference"
    assert plain.predicted_relative_error == pytest.approx(math.sqrt(J_fd) / ref_norm, rel=1e-7)


def test_score_full_directory_candidates(models):
    """The base as a candidate of the fine-tuned model: every selected linear differs; the model
    itself: nothing differs, J = 0."""
    loaded = load_model(models["bert_ft"], dtype="float64")
    windows = make_windows(loaded.tokenizer, models["text"], S, L, 1, loaded.kind)
    base_row, same_row = score(loaded, windows, [Candidate("base", models["bert_base"]), Candidate("ft", models["bert_ft"])])
    assert (base_row.modules, base_row.tensors) == (12, 12)
    assert (same_row.modules, same_row.tensors, same_row.J) == (0, 0, 0.0)
    base_params = Checkpoint.open(models["bert_base"])
    params = dict(loaded.model.named_parameters())
    E = {n: t.double() - params[n].detach() for n, t in base_params.load(list(base_params.tensors)).items()
         if n in params and not torch.equal(t.double(), params[n].detach())}
    J_fd, _ = finite_difference(loaded.model, loaded.kind, windows, E)
    assert abs(base_row.J - J_fd) <= 1e-7 * J_fd


@pytest.mark.parametrize("which", ["llama", "bert"])
def test_score_predicts_fidelity_to_first_order(models, tmp_path, which, capsys):
    """A small error: the measured relative error and KL (fidelity, on an assembled model
    directory) equal the predicted ones up to O(‖E‖)."""
    new, _ = replacement(models, which, scale=1e-3, seed=5)
    path = str(tmp_path / "small.safetensors")
    save_file({n: t.float() for n, t in new.items()}, path)
    candidate_dir = str(tmp_path / "small-model")
    assert main(["assemble", models[f"{which}_ft"], "--replace", path, "--out", candidate_dir]) == 0
    common = ["--text", models["heldout"], "--samples", "3", "--seq-len", "12", "--seed", "4", "--dtype", "float64",
              "--base", models[f"{which}_base"], "--format", "json"]
    capsys.readouterr()
    assert main(["score", models[f"{which}_ft"], "--candidates", f"small={path}"] + common) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert main(["fidelity", models[f"{which}_ft"], "--candidates", f"small={candidate_dir}"] + common) == 0
    measured = json.loads(capsys.readouterr().out)
    p, m = predicted["candidates"][0], measured["candidates"][0]
    assert p["name"] == m["name"] == "small" and p["normalization"] == m["normalization"] == "base"
    assert p["tokens"] == m["tokens"] == predicted["tokens"] == 36
    assert p["predicted_relative_error"] == pytest.approx(m["relative_error"], rel=1e-3)
    assert p["predicted_error"] == pytest.approx(m["error"], rel=1e-3)
    if which == "llama":
        assert p["predicted_mean_kl"] == pytest.approx(m["mean_kl"], rel=2e-3)


def test_score_errors(models, tmp_path, capsys):
    bad_name = str(tmp_path / "bad_name.safetensors")
    save_file({"model.layers.9.mlp.up_proj.weight": torch.zeros(128, 64)}, bad_name)
    bad_shape = str(tmp_path / "bad_shape.safetensors")
    save_file({"model.layers.0.mlp.up_proj.weight": torch.zeros(64, 64)}, bad_shape)
    for candidate, needle in [(bad_name, "model.layers.9.mlp.up_proj.weight is not in"),
                              (bad_shape, "has shape [64, 64], the model's has [128, 64]"),
                              (str(tmp_path / "missing"), "neither a model directory nor a safetensors file"),
                              (models["bert_ft"], "is not in")]:
        code = main(["score", models["llama_ft"], "--text", models["text"], "--samples", "1", "--seq-len", "8",
                     "--candidates", candidate])
        err = capsys.readouterr().err
        assert code == 1 and needle in err and "Traceback" not in err, err
