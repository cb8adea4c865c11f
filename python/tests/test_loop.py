"""The whole loop across both halves of the project: capture (companion) → analyze → plan → compress
→ merge (the `deltaplan` binary) → fidelity (companion), on the tiny Llama (GQA) and BERT models.

The merged directory must load in transformers as `deltaplan merge` writes it (config and tokenizer
carried in the artifact), and its end-to-end error must lie strictly between the fine-tuned
model's (0) and the base's (1), and shrink with the budget.

The binary is `$DELTAPLAN` or the repository's `.build/debug/deltaplan` (which `swift test`
builds). Without one the test is skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from deltaplan_model.cli import main

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def deltaplan_binary() -> str:
    path = os.environ.get("DELTAPLAN") or os.path.join(REPO, ".build", "debug", "deltaplan")
    if not os.access(path, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"no deltaplan binary at {path}: run `swift build` (or set DELTAPLAN) before these tests")
        pytest.skip(f"no deltaplan binary at {path} (run `swift build`, or set DELTAPLAN)")
    return path


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("which", ["llama", "bert"])
def test_capture_to_fidelity(models, tmp_path, capsys, which):
    dp = deltaplan_binary()
    base, ft = models[f"{which}_base"], models[f"{which}_ft"]
    calibration = str(tmp_path / "calibration.safetensors")
    assert main(["capture", ft, "--text", models["text"], "--samples", "6", "--seq-len", "16", "--seed", "1",
                 "--probes", "2", "--rows", "64", "--out", calibration]) == 0
    store = str(tmp_path / "store")
    run(dp, "analyze", "--base", base, "--finetuned", ft, "--calibration", calibration, "--out", store)
    manifest = json.load(open(os.path.join(store, "manifest.json")))
    assert all(m["objective"] == "paired" for m in manifest["matrices"])

    candidates = []
    for budget in ("1/8", "1/2"):
        name = budget.replace("/", "-")
        plan = str(tmp_path / f"plan-{name}.json")
        run(dp, "plan", store, "--budget", budget, "--strategy", "exact", "--out", plan)
        assert json.load(open(plan))["objective"] == "paired"
        artifact, merged = str(tmp_path / f"artifact-{name}"), str(tmp_path / f"merged-{name}")
        run(dp, "compress", store, "--plan", plan, "--out", artifact)
        run(dp, "merge", "--base", base, "--artifact", artifact, "--out", merged)
        for carried in ("config.json", "tokenizer_config.json"):
            assert open(os.path.join(merged, carried), "rb").read() == open(os.path.join(ft, carried), "rb").read()
        candidates.append(f"plan-{name}={merged}")

    capsys.readouterr()
    assert main(["fidelity", ft, "--base", base, "--text", models["heldout"], "--samples", "4", "--seq-len", "16",
                 "--seed", "3", "--format", "json", "--candidates", f"ft={ft}", f"base={base}", *candidates]) == 0
    rows = {r["name"]: r["relative_error"] for r in json.loads(capsys.readouterr().out)["candidates"]}
    assert rows["ft"] == 0.0
    assert rows["base"] == pytest.approx(1.0, abs=1e-12)
    assert 0.0 < rows["plan-1-2"] < rows["plan-1-8"] < 1.0, rows
