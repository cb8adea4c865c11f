"""The CLI through main([...]) and a subprocess: JSON round trips and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from deltaplan_model.calibration import read_calibration
from deltaplan_model.cli import main
from deltaplan_model.models import load_model
from deltaplan_model.selection import Selection
from deltaplan_model.text import make_windows

from reference import check_contract, recompute

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("which", ["llama_ft", "bert_ft"])
def test_capture_round_trip(models, tmp_path, capsys, which):
    out = str(tmp_path / "calib.safetensors")
    code, stdout, err = run(["capture", models[which], "--text", models["jsonl"], "--out", out, "--samples", "2",
                             "--seq-len", "10", "--probes", "2", "--rows", "15", "--seed", "3", "--dtype", "float64",
                             "--gram-dtype", "f64", "--format", "json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    tensors, metadata = read_calibration(out)
    check_contract(tensors, metadata)
    samples = json.loads(metadata["deltaplan.samples"])
    assert samples == {"rows": 15, "tokens": 20, "probes": 2, "seed": 3}
    assert summary["rows"] == 15 and summary["tokens"] == 20 and summary["probes"] == 2
    kind_objective = "next-token-fisher" if which.startswith("llama") else "hidden-gauss-newton"
    assert metadata["deltaplan.objective"] == kind_objective and metadata["deltaplan.probes"] == "2"
    assert which in metadata["deltaplan.source"] or os.path.basename(models[which]) in metadata["deltaplan.source"]
    aliases = json.loads(metadata["deltaplan.aliases"])
    assert len(aliases) == (6 if which.startswith("llama") else 4)
    assert not [f for f in os.listdir(tmp_path) if f != "calib.safetensors"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    # The file's statistics against the independent recomputation (F64 grams: float64 precision).
    loaded = load_model(models[which], dtype="float64")
    windows = make_windows(loaded.tokenizer, models["jsonl"], 2, 10, 3, loaded.kind)
    modules = Selection().select(loaded.model)
    xs, gs, _ = recompute(loaded.model, loaded.kind, windows, modules, 2, seed=3)
    for m in modules:
        entry = aliases.get(m, m)
        H = sum(x[m].T @ x[m] for x in xs)
        G = sum(g[m].T @ g[m] for probe in gs for g in probe) / 2
        assert tensors[f"{entry}.gram"].dtype == torch.float64
        assert torch.allclose(tensors[f"{entry}.gram"], H, rtol=0, atol=1e-12 * float(H.abs().max()))
        assert torch.allclose(tensors[f"{m}.out_gram"], G, rtol=0, atol=1e-12 * float(G.abs().max()))
        assert int(tensors[f"{entry}.count"][0]) == 20
        if m == entry:
            assert f"{m}.gram" in tensors and f"{m}.inputs" in tensors
        else:
            assert f"{m}.gram" not in tensors and f"{m}.count" not in tensors and f"{m}.inputs" not in tensors
        assert f"{m}.grads" in tensors


def test_capture_diagonal_and_no_sensitivities(models, tmp_path, capsys):
    diag = str(tmp_path / "diag.safetensors")
    code, _, err = run(["capture", models["bert_ft"], "--text", models["text"], "--out", diag, "--samples", "2",
                        "--seq-len", "8", "--diagonal-output", "--rows", "0"], capsys)
    assert code == 0, err
    tensors, metadata = read_calibration(diag)
    check_contract(tensors, metadata)
    outs = [k for k in tensors if k.endswith(".out_gram")]
    assert len(outs) == 12 and all(tensors[k].dim() == 1 and tensors[k].dtype == torch.float32 for k in outs)
    assert not [k for k in tensors if k.endswith((".inputs", ".grads"))]

    plain = str(tmp_path / "plain.safetensors")
    code, stdout, err = run(["capture", models["llama_ft"], "--text", models["text"], "--out", plain, "--samples", "2",
                             "--seq-len", "8", "--no-sensitivities", "--rows", "5"], capsys)
    assert code == 0, err
    assert "no sensitivities" in stdout
    tensors, metadata = read_calibration(plain)
    check_contract(tensors, metadata)
    assert not [k for k in tensors if k.endswith((".out_gram", ".grads"))]
    assert "deltaplan.probes" not in metadata and "deltaplan.objective" not in metadata
    assert json.loads(metadata["deltaplan.samples"]) == {"rows": 5, "tokens": 16, "probes": 0, "seed": 0}


def test_capture_errors(models, tmp_path, capsys):
    out = str(tmp_path / "c.safetensors")
    cases = [
        (["capture", str(tmp_path / "nope"), "--text", models["text"], "--out", out], "nope: not a directory"),
        (["capture", models["llama_ft"], "--text", str(tmp_path / "missing.txt"), "--out", out], "missing.txt: no such file"),
        (["capture", models["llama_ft"], "--text", models["text"], "--out", out, "--samples", "100000"], "windows"),
        (["capture", models["llama_ft"], "--text", models["text"], "--out", out, "--seq-len", "1000"], "max_position_embeddings"),
        (["capture", models["llama_ft"], "--text", models["text"], "--out", out, "--include", "(["], "--include"),
        (["capture", models["llama_ft"], "--text", models["text"], "--out", out, "--include", "nothing-matches"],
         "no module is selected"),
        (["capture", models["llama_ft"], "--text", models["text"], "--out", out, "--include", r"embed_tokens\.weight"],
         "not a linear layer"),
        (["capture", models["llama_ft"], "--text", models["text"], "--out", str(tmp_path / "no" / "c.safetensors")],
         "does not exist"),
    ]
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"text": "kaka lolo"}\n{"txt": 3}\n')
    cases.append((["capture", models["llama_ft"], "--text", str(bad_jsonl), "--out", out], "bad.jsonl:2"))
    for argv, needle in cases:
        code, stdout, err = run(argv + ["--samples", "2", "--seq-len", "8"] if "--samples" not in argv and "--seq-len" not in argv
                                else argv, capsys)
        assert code == 1, (argv, err)
        assert needle in err and "Traceback" not in err, (needle, err)
        assert err.count("\n") == 1
        assert not os.path.exists(out)
