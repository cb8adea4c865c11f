"""A sign code of the residual after a plan's SVD segments, as replaced tensors (issue #11, direction 5).

For every matrix of the store: R = W_finetuned − W_merged (what the plan's artifact left out),
W = W_merged + s·sign(R) with s = F16(mean |R|) and sign(0) = +1 (BitDelta's code, applied to the
residual instead of ΔW): m·n + 16 more bits per matrix, one bit per delta parameter, so a plan at
α = 1/16 plus the code costs α ≈ 1/8. Every other tensor is carried from the merged checkpoint.

Prints, per matrix type, the activation error tr(E H Eᵀ) relative to tr(ΔW H ΔWᵀ) (H: the
calibration Gram of the matrix's input) of the plan alone, of the plan plus the code, and of
COMPARE (another merged checkpoint at the same size, e.g. a plan at 1/8).

Usage: python3 sign_residual.py BASE FINETUNED STORE CALIBRATION MERGED COMPARE OUT
       (BASE, FINETUNED, MERGED, COMPARE: model.safetensors files; OUT: the candidate's tensors)
"""
import json
import os
import sys
from collections import defaultdict

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def gram(calibration, entry):
    with safe_open(calibration, "pt") as f:
        return f.get_tensor(f"{entry}.gram").double()


def main():
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    base_path, ft_path, store, calibration, merged_path, compare_path, out = sys.argv[1:]
    base, ft = load_file(base_path), load_file(ft_path)
    merged, compare = load_file(merged_path), load_file(compare_path)
    records = json.load(open(os.path.join(store, "manifest.json")))["matrices"]
    result = dict(merged)
    sums = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])  # type → [‖ΔW‖_H², plan, plan + code, compare]
    for record in records:
        name = record["name"]
        entry = record.get("calibrationEntry") or name.removesuffix(".weight")
        h = gram(calibration, entry)
        w_ft = ft[name].double()
        delta = w_ft - base[name].double()
        residual = w_ft - merged[name].double()
        s = float(torch.tensor(residual.abs().mean().item(), dtype=torch.float16))
        coded = merged[name].double() + s * torch.where(residual >= 0, 1.0, -1.0).double()
        result[name] = coded.float()

        def cost(e):
            return float(((e @ h) * e).sum())
        kind = name.split(".", 3)[-1].removesuffix(".weight")
        row = sums[kind]
        row[0] += cost(delta)
        row[1] += cost(residual)
        row[2] += cost(w_ft - coded.float().double())
        row[3] += cost(w_ft - compare[name].double())
    tmp = out + ".tmp"
    save_file({k: v.contiguous() for k, v in result.items()}, tmp, metadata={"format": "pt"})
    os.replace(tmp, out)
    print("| matrix type | plan | plan + sign code of the residual | compare |")
    print("|---|---|---|---|")
    total = [0.0] * 4
    for kind in sorted(sums):
        row = sums[kind]
        total = [a + b for a, b in zip(total, row)]
        print(f"| {kind} | {row[1] / row[0]:.4f} | {row[2] / row[0]:.4f} | {row[3] / row[0]:.4f} |")
    print(f"| all | {total[1] / total[0]:.4f} | {total[2] / total[0]:.4f} | {total[3] / total[0]:.4f} |")


if __name__ == "__main__":
    main()
