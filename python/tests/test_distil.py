"""distil: on factors whose σ are exactly half of the SVD of ΔW, the optimum is known in closed form
(the fitted deltas are the true ones, error 0); the fit must get there, write what
`deltaplan distil apply` reads, and refuse bad input naming it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from deltaplan_model.checkpoint import Checkpoint
from deltaplan_model.cli import main
from deltaplan_model.distil import ARTIFACT_KEY, VT_GROUP_COLUMNS_KEY

HASH = "ab" * 32


GROUP = 8


def write_factors(base_dir: str, ft_dir: str, path: str, scale: float, split: int = 3, metadata: dict | None = None,
                  vt_scale: float = 1.0) -> dict:
    """Factors of ΔW = W_ft − W_base for every 2-D linear weight the two differ in: its SVD in two
    segments ([0, split) and the rest), σ multiplied by `scale` and the first GROUP columns of vt by
    `vt_scale`, V̂ᵀ's groups GROUP columns wide (unless `metadata` is given). Returns the true σ by segment."""
    base, ft = Checkpoint.open(base_dir), Checkpoint.open(ft_dir)
    names = [n for n in ft.tensors if n.endswith(".weight") and len(ft.tensors[n].shape) == 2 and "embed" not in n
             and "embeddings" not in n and "lm_head" not in n]
    wb, wf = base.load(names), ft.load(names)
    tensors, true = {}, {}
    for n in names:
        delta = wf[n].double() - wb[n].double()
        if float(delta.abs().max()) == 0.0:
            continue
        u, s, vt = torch.linalg.svd(delta, full_matrices=False)
        for j, (a, b) in enumerate([(0, split), (split, s.shape[0])]):
            prefix = f"{n}.seg{j}"
            tensors[prefix + ".u"] = u[:, a:b].float().contiguous()
            tensors[prefix + ".sigma"] = (scale * s[a:b]).float().contiguous()
            damaged = vt[a:b].clone()
            damaged[:, :GROUP] *= vt_scale
            tensors[prefix + ".vt"] = damaged.float().contiguous()
            true[prefix + ".sigma"] = s[a:b].float()
    groups = json.dumps({n[: -len(".sigma")]: GROUP for n in true})
    save_file(tensors, path, metadata={ARTIFACT_KEY: HASH, VT_GROUP_COLUMNS_KEY: groups} if metadata is None else metadata)
    return true


def fitted_delta(fitted: dict, exported: dict, prefix: str) -> torch.Tensor:
    """Σ-term of one segment as `deltaplan distil apply` makes it: diag(r) u diag(σ') (vt ⊙ expand(g))."""
    vt = exported[prefix + ".vt"]
    if prefix + ".vt_groups" in fitted:
        vt = vt * fitted[prefix + ".vt_groups"].double().repeat_interleave(GROUP, dim=1)[:, : vt.shape[1]]
    return (fitted[prefix + ".u_rows"].double()[:, None] * exported[prefix + ".u"]) * fitted[prefix + ".sigma"].double() @ vt


@pytest.mark.parametrize("kind,damage", [("llama", "sigma"), ("bert", "sigma"), ("bert", "vt group")])
def test_recovers_halved_singular_values(models, tmp_path, capsys, kind, damage):
    """σ halved: each delta is half the true one; one group of V̂ᵀ's columns halved: the deltas err
    on those input columns only. Either way the fit must bring the model back."""
    factors, out = str(tmp_path / "factors.safetensors"), str(tmp_path / "sigma.safetensors")
    true = write_factors(models[f"{kind}_base"], models[f"{kind}_ft"], factors, scale=0.5 if damage == "sigma" else 1.0,
                         vt_scale=0.5 if damage == "vt group" else 1.0)
    args = [models[f"{kind}_ft"], "--base", models[f"{kind}_base"], "--factors", factors, "--text", models["text"],
            "--samples", "4", "--seq-len", "16", "--steps", "150", "--lr", "0.05", "--format", "json", "--out", out]
    assert main(["distil", *args]) == 0
    report = json.loads(capsys.readouterr().out)
    # Half of every delta: to first order the relative error is ½ (less when only a group is halved).
    assert (0.35 if damage == "sigma" else 0.05) < report["relative_error_before"] < 0.65, report
    assert report["relative_error_after"] < 0.1 * report["relative_error_before"], report
    with safe_open(out, framework="pt") as f:
        metadata = f.metadata()
        fitted = {n: f.get_tensor(n) for n in f.keys()}
    assert metadata[ARTIFACT_KEY] == HASH
    assert float(metadata["deltaplan.distil.relative_error_after"]) == pytest.approx(report["relative_error_after"], rel=1e-5)
    assert set(fitted) == set(true) | {n[: -len(".sigma")] + suffix for n in true for suffix in (".u_rows", ".vt_groups")}
    for n in true:
        columns = Checkpoint.open(models[f"{kind}_ft"]).tensors[n.rsplit(".seg", 1)[0]].shape[1]
        assert list(fitted[n[: -len(".sigma")] + ".vt_groups"].shape) == [true[n].shape[0], -(-columns // GROUP)]
    # Each matrix's fitted delta, Σ diag(r) u diag(σ') vt, moves from half the true ΔW (a relative
    # distance of ½) towards it; 64 tokens do not determine every matrix's 3·64 multipliers, so
    # only the output is back (above), not each delta exactly.
    with safe_open(factors, framework="pt") as f:
        exported = {n: f.get_tensor(n).double() for n in f.keys()}

    def undamaged(vt: torch.Tensor) -> torch.Tensor:
        vt = vt.clone()
        vt[:, :GROUP] *= 2.0 if damage == "vt group" else 1.0
        return vt

    distances = []
    for matrix in sorted({n.rsplit(".seg", 1)[0] for n in true}):
        prefixes = [n[: -len(".sigma")] for n in true if n.rsplit(".seg", 1)[0] == matrix]
        fit = sum(fitted_delta(fitted, exported, p) for p in prefixes)
        truth = sum(exported[p + ".u"] * true[p + ".sigma"].double() @ undamaged(exported[p + ".vt"]) for p in prefixes)
        distances.append(float((fit - truth).norm() / truth.norm()))
    distances.sort()
    assert distances[len(distances) // 2] < 0.25 and distances[-1] < 0.4, distances

    # Same inputs, same bytes.
    again = str(tmp_path / "again.safetensors")
    assert main(["distil", *args[:-1], again]) == 0
    capsys.readouterr()

    assert open(out, "rb").read() == open(again, "rb").read()


def test_exact_factors_are_kept(models, tmp_path, capsys):
    """Factors that already reproduce the model: nothing to gain; the error is that of the factors'
    float32 rounding, and when no step improves on it the values come back as they were."""
    factors, out = str(tmp_path / "factors.safetensors"), str(tmp_path / "sigma.safetensors")
    true = write_factors(models["bert_base"], models["bert_ft"], factors, scale=1.0)
    assert main(["distil", models["bert_ft"], "--base", models["bert_base"], "--factors", factors, "--text", models["text"],
                 "--samples", "2", "--seq-len", "16", "--steps", "5", "--format", "json", "--out", out]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["relative_error_before"] < 1e-4 and report["relative_error_after"] <= report["relative_error_before"]
    with safe_open(out, framework="pt") as f:
        for n in true:
            if report["best_step"] == 0:
                assert torch.equal(f.get_tensor(n), true[n])
                assert torch.equal(f.get_tensor(n[: -len(".sigma")] + ".u_rows"), torch.ones(f.get_slice(n[: -len(".sigma")] + ".u_rows").get_shape()))


@pytest.mark.parametrize("fault", ["no hash", "unknown tensor", "incomplete segment", "base lacks it", "group widths not JSON",
                                   "group width missing", "group width of no segment"])
def test_bad_input_names_it(models, tmp_path, capsys, fault):
    factors, out = str(tmp_path / "factors.safetensors"), str(tmp_path / "sigma.safetensors")
    true = write_factors(models["bert_base"], models["bert_ft"], factors, scale=0.5,
                         metadata={} if fault == "no hash" else None)
    first = sorted(true)[0][: -len(".sigma")]
    base = models["bert_base"]
    if fault in ("unknown tensor", "incomplete segment"):
        with safe_open(factors, framework="pt") as f:
            tensors = {n: f.get_tensor(n) for n in f.keys()}
        if fault == "unknown tensor":
            for part in ("u", "sigma", "vt"):
                tensors[f"encoder.layer.9.output.dense.weight.seg0.{part}"] = tensors[f"{first}.{part}"].clone()
        else:
            del tensors[f"{first}.vt"]
        save_file(tensors, factors, metadata={ARTIFACT_KEY: HASH})
    if fault.startswith("group width"):
        with safe_open(factors, framework="pt") as f:
            tensors = {n: f.get_tensor(n) for n in f.keys()}
        widths = {n[: -len(".sigma")]: GROUP for n in true}
        if fault == "group width missing":
            del widths[first]
        elif fault == "group width of no segment":
            widths["encoder.layer.9.output.dense.weight.seg0"] = GROUP
        text = "{not json" if fault == "group widths not JSON" else json.dumps(widths)
        save_file(tensors, factors, metadata={ARTIFACT_KEY: HASH, VT_GROUP_COLUMNS_KEY: text})
    if fault == "base lacks it":
        base = str(tmp_path / "base-without")
        import shutil
        shutil.copytree(models["bert_base"], base)
        from safetensors.torch import load_file
        weights = load_file(f"{base}/model.safetensors")
        del weights[first.rsplit(".seg", 1)[0]]
        save_file(weights, f"{base}/model.safetensors", metadata={"format": "pt"})
    code = main(["distil", models["bert_ft"], "--base", base, "--factors", factors, "--text", models["text"],
                 "--samples", "2", "--seq-len", "16", "--steps", "1", "--out", out])
    err = capsys.readouterr().err
    assert code == 1
    expected = {"no hash": ARTIFACT_KEY, "unknown tensor": "encoder.layer.9.output.dense.weight",
                "incomplete segment": f"{first}.vt", "base lacks it": first.rsplit(".seg", 1)[0],
                "group widths not JSON": f"{VT_GROUP_COLUMNS_KEY} is not JSON", "group width missing": f"no group width for segment {first}",
                "group width of no segment": "encoder.layer.9.output.dense.weight.seg0"}[fault]
    assert expected in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "sigma.safetensors").exists()
