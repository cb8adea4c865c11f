"""The BitDelta baseline as replaced tensors, for end-to-end comparison beside DeltaPlan's artifacts.

For every 2-D `.weight` present in both checkpoints and selected by the plan's store (the names
listed in STORE/manifest.json), W = W_base + s * sign(ΔW) with s = F16(mean |ΔW|) and sign(0) = +1,
the convention of `deltaplan evaluate`'s bitdelta baseline, in Float32 (as `deltaplan merge --dtype F32`
writes the plans' candidates); every other tensor of the fine-tuned checkpoint is carried as is.
Writes one safetensors file (for `deltaplan-model assemble --replace`).

Usage: python3 bitdelta.py BASE.safetensors FINETUNED.safetensors STORE OUT.safetensors
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    base_path, ft_path, store, out = sys.argv[1:]
    base, ft = load_file(base_path), load_file(ft_path)
    planned = {m["name"] for m in json.load(open(os.path.join(store, "manifest.json")))["matrices"]}
    missing = sorted(planned - base.keys() - ft.keys())
    if missing:
        sys.exit(f"{store}: matrices not in the checkpoints: {missing[:5]}")
    result = {}
    for name, w_ft in ft.items():
        if name not in planned:
            result[name] = w_ft
            continue
        w_base = base[name]
        delta = w_ft.double() - w_base.double()
        s = float(torch.tensor(delta.abs().mean().item(), dtype=torch.float16))
        signs = torch.where(delta >= 0, 1.0, -1.0).double()
        result[name] = w_base.float() + (s * signs).float()
    tmp = out + ".tmp"
    save_file({k: v.contiguous() for k, v in result.items()}, tmp, metadata={"format": "pt"})
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
