"""fidelity: 0 for the fine-tuned model, 1 for the base, strictly between for a partial mix;
every metric against an independent computation."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from deltaplan_model.checkpoint import Checkpoint
from deltaplan_model.cli import main
from deltaplan_model.models import load_model
from deltaplan_model.text import make_windows

S, L, SEED = 3, 12, 2


def mix(models, which, t, directory):
    """A model directory whose linears are W_base + t·(W_ft − W_base) (other tensors: fine-tuned)."""
    base = Checkpoint.open(models[f"{which}_base"])
    ft = Checkpoint.open(models[f"{which}_ft"])
    a, b = base.load(list(base.tensors)), ft.load(list(ft.tensors))
    mixed = {n: (a[n] + t * (b[n] - a[n])) for n in a if not torch.equal(a[n], b[n])}
    replacement = str(directory) + ".safetensors"
    save_file(mixed, replacement)
    assert main(["assemble", models[f"{which}_ft"], "--replace", replacement, "--out", str(directory)]) == 0
    return str(directory)


def hidden_and_logits(model, kind, ids):
    if kind == "causal-lm":
        return model.model(input_ids=ids, use_cache=False).last_hidden_state[0], model(input_ids=ids, use_cache=False).logits[0]
    return model(input_ids=ids).last_hidden_state[0], None


@pytest.mark.parametrize("which", ["llama", "bert"])
def test_fidelity(models, tmp_path, capsys, which):
    half = mix(models, which, 0.5, tmp_path / "half")
    argv = ["fidelity", models[f"{which}_ft"], "--text", models["heldout"], "--samples", str(S), "--seq-len", str(L),
            "--seed", str(SEED), "--dtype", "float64", "--format", "json", "--candidates",
            f"self={models[which + '_ft']}", f"base={models[which + '_base']}", f"half={half}"]
    capsys.readouterr()
    assert main(argv + ["--base", models[f"{which}_base"]]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in report["candidates"]}
    assert report["normalization"] == "base" and report["tokens"] == S * L
    assert rows["self"]["relative_error"] == 0.0 and rows["self"]["error"] == 0.0
    assert rows["base"]["relative_error"] == pytest.approx(1.0, abs=1e-14)
    assert 0.0 < rows["half"]["relative_error"] < 1.0
    assert report["base"]["relative_error"] == pytest.approx(1.0, abs=1e-14)
    assert report["reference"]["relative_error"] == 0.0

    # Independent recomputation of every metric.
    ft = load_model(models[f"{which}_ft"], dtype="float64")
    others = {"base": load_model(models[f"{which}_base"], dtype="float64", tokenizer=False),
              "half": load_model(half, dtype="float64", tokenizer=False)}
    windows = make_windows(ft.tokenizer, models["heldout"], S, L, SEED, ft.kind)
    with torch.no_grad():
        ref = [hidden_and_logits(ft.model, ft.kind, windows[w:w + 1]) for w in range(S)]
        out = {k: [hidden_and_logits(m.model, m.kind, windows[w:w + 1]) for w in range(S)] for k, m in others.items()}
    base_norm = math.sqrt(sum(float(((out["base"][w][0] - ref[w][0]) ** 2).sum()) for w in range(S)))
    ref_norm = math.sqrt(sum(float((ref[w][0] ** 2).sum()) for w in range(S)))
    for name in ("base", "half"):
        error = math.sqrt(sum(float(((out[name][w][0] - ref[w][0]) ** 2).sum()) for w in range(S)))
        assert rows[name]["error"] == pytest.approx(error, rel=1e-12)
        assert rows[name]["relative_error"] == pytest.approx(error / base_norm, rel=1e-12)
        if which == "llama":
            kl = sum(float((torch.softmax(ref[w][1], -1) * (torch.log_softmax(ref[w][1], -1)
                                                            - torch.log_softmax(out[name][w][1], -1))).sum())
                     for w in range(S)) / (S * L)
            nll = -sum(float(torch.log_softmax(out[name][w][1], -1)[torch.arange(L - 1), windows[w, 1:]].sum())
                       for w in range(S))
            assert rows[name]["mean_kl"] == pytest.approx(kl, rel=1e-10) and kl > 0
            assert rows[name]["perplexity"] == pytest.approx(math.exp(nll / (S * (L - 1))), rel=1e-12)
            assert rows[name]["mean_cosine"] is None
        else:
            cos = sum(float(torch.dot(out[name][w][0].mean(0), ref[w][0].mean(0))
                            / (out[name][w][0].mean(0).norm() * ref[w][0].mean(0).norm())) for w in range(S)) / S
            assert rows[name]["mean_cosine"] == pytest.approx(cos, rel=1e-12) and cos < 1
            assert rows[name]["perplexity"] is None and rows[name]["mean_kl"] is None
    if which == "llama":
        assert rows["self"]["mean_kl"] == 0.0
        assert rows["self"]["perplexity"] == pytest.approx(report["reference"]["perplexity"], rel=1e-15)
    else:
        assert rows["self"]["mean_cosine"] == pytest.approx(1.0, abs=1e-15)

    # Without --base: the absolute normalization, said so.
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["normalization"] == "reference" and report["base"] is None
    rows = {r["name"]: r for r in report["candidates"]}
    assert rows["base"]["relative_error"] == pytest.approx(base_norm / ref_norm, rel=1e-12)
    assert main(argv[:-4] + ["--format", "table", "--candidates", f"half={half}"]) == 0
    table = capsys.readouterr().out
    assert "absolute: no --base given" in table and "half" in table


def test_fidelity_errors(models, tmp_path, capsys):
    cases = [
        (["--candidates", f"x={tmp_path / 'nope'}"], "nope: not a directory"),
        (["--candidates", f"x={models['bert_ft']}"], "is an encoder"),
        (["--candidates", f"x={models['llama_base']}", "--base", models["llama_ft"] + "/config.json"], "not a directory"),
        (["--candidates", f"x={models['llama_base']}", f"x={models['llama_ft']}"], "used twice"),
        (["--candidates", f"x={models['llama_base']}", "--base", models["llama_ft"]], "same last hidden state"),
    ]
    for extra, needle in cases:
        code = main(["fidelity", models["llama_ft"], "--text", models["text"], "--samples", "1", "--seq-len", "8"] + extra)
        err = capsys.readouterr().err
        assert code == 1 and needle in err and "Traceback" not in err, (needle, err)
