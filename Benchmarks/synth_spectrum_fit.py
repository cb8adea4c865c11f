#!/usr/bin/env python3
"""Fits the default delta spectra of `deltaplan synth` to the real development pair.

Usage (from the repository root; needs numpy, scipy, safetensors and torch for BF16):

    python3 Benchmarks/synth_spectrum_fit.py [--pair ../shared/pairs/minilm-kjv]
    python3 Benchmarks/synth_spectrum_fit.py --synth synth=DIR [--synth before=DIR2 ...]
        # each DIR from `deltaplan synth --profile bert-base --scale 0.5 --layers 6 --seed 1 --out DIR`
        # (the development pair's shapes: 6 layers of 384x384 attention, 1536x384 and 384x1536 MLP)

The model (`SyntheticPair`'s doc comment, `DeltaSpectrum` in Swift): for an m x n delta with
r = min(m, n), aspect c = r / max(m, n) and relative index t_i = (i - 1/2) / r, i = 1 ... r,

    sigma_i  proportional to  (t_i + t_h)^(-p) * E_c(t_i)^g

where E_c(t) is the Marchenko-Pastur singular-value quantile of a white r x max(m, n) matrix (the
value exceeded by a fraction t of its singular values), divided by its largest value: 1 at t = 0,
falling to 0 at t = 1 for a square matrix and to (1 - sqrt c) / (1 + sqrt c) for a rectangular one.
p is the decay of the power law, t_h flattens the head (in units of the rank), g sharpens the edge.
Every parameter is a function of the relative index: the assumption that lets the fit at 384
generalise to 4096 and 11008 is that a wider delta has the same normalised shape stretched over
its rank (what the white part of it does, by Marchenko-Pastur) rather than the same number of
leading vectors.

Stages: (1) float64 SVD of every delta of the pair (as read from the BF16 files, so with their
rounding); (2) per matrix, least squares on log sigma over the leading 90% of the values,
weighted by i^(-1/2) so the head counts as much as the long tail, with p, t_h and g free; (3) g
fixed per type (median of stage 2), p and t_h refitted; (4) per type the mean, standard deviation
and correlation of (p, ln(t_h + 0.001)): the distribution `synth` draws each matrix's parameters
from. It prints the Swift constants, the per-matrix fits, the energy statistics of the model at
Llama-2-7B's shapes, and, with --synth, the comparison table of BENCHMARKS.md.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
from scipy.optimize import least_squares

EPSILON = 0.001  # the offset of ln(t_h + EPSILON): t_h can be 0
FIT_FRACTION = 0.9


def mp_edge(c, r):
    """E_c(t_i) for t_i = (i - 1/2) / r: the same quadrature as DeltaSpectrum.edge in Swift."""
    c = min(max(c, 1e-12), 1.0)
    lo, hi = 1.0 - math.sqrt(c), 1.0 + math.sqrt(c)
    # Density of the singular values s of a white matrix with aspect c (normalised so the
    # squared values follow Marchenko-Pastur with ratio c): sqrt((hi^2 - s^2)(s^2 - lo^2)) / (pi c s).
    # Substituting s = lo + (hi - lo)(1 - cos u)/2 removes the square-root edges.
    k = 4096
    u = np.linspace(0.0, math.pi, k + 1)
    s = lo + (hi - lo) * (1.0 - np.cos(u)) / 2.0
    ds = (hi - lo) * np.sin(u) / 2.0
    dens = np.sqrt(np.maximum((hi * hi - s * s) * (s * s - lo * lo), 0.0)) / (math.pi * c * np.maximum(s, 1e-300))
    if lo == 0.0:
        dens[0] = 2.0 / math.pi  # the limit at s = 0 for c = 1
    f = dens * ds
    cdf = np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) / 2.0 * (u[1] - u[0]))])
    above = 1.0 - cdf / cdf[-1]  # fraction of values above s, falling from 1 to 0
    t = (np.arange(r) + 0.5) / r
    values = np.interp(t, above[::-1], s[::-1])
    return values / hi


def model(p, th, g, m, n):
    r, c = min(m, n), min(m, n) / max(m, n)
    t = (np.arange(r) + 0.5) / r
    s = (t + th) ** (-p) * mp_edge(c, r) ** g
    return s / np.sqrt(np.sum(s * s))


def statistics(s):
    e = s * s / np.sum(s * s)
    cum = np.cumsum(e)
    nz = e[e > 0]
    effective = float(np.exp(-np.sum(nz * np.log(nz))))
    at = lambda k: float(cum[min(k, len(cum)) - 1])
    rank90 = int(np.searchsorted(cum, 0.9) + 1)
    tail = float(1 - cum[len(cum) // 2 - 1])
    return {"top2": at(2), "top34": at(34), "top128": at(128), "top968": at(968), "eff": effective, "r90": rank90,
            "tail": tail}


def module_type(name):
    """attention or mlp, by Hugging Face name (BERT- and Llama-style)."""
    if any(k in name for k in ("attention.", "self_attn.", ".query", ".key", ".value")):
        return "attention"
    if any(k in name for k in ("intermediate.", "output.dense", "mlp.")):
        return "mlp"
    return None


def load_deltas(directory):
    from safetensors import safe_open
    base = safe_open(os.path.join(directory, "base", "model.safetensors"), "pt")
    fine = safe_open(os.path.join(directory, "finetuned", "model.safetensors"), "pt")
    out = {}
    for key in base.keys():
        if not key.endswith(".weight") or module_type(key) is None:
            continue
        wb = base.get_tensor(key).double().numpy()
        if wb.ndim != 2:
            continue
        wf = fine.get_tensor(key).double().numpy()
        out[key] = (wf - wb, wb)
    return out


def spectra(deltas):
    return {k: (np.linalg.svd(d, compute_uv=False), d.shape, np.linalg.norm(d) / np.linalg.norm(wb))
            for k, (d, wb) in deltas.items()}


def fit(s, shape, g=None):
    s = s / np.sqrt(np.sum(s * s))
    m, n = shape
    k = int(FIT_FRACTION * len(s))
    w = np.arange(1, k + 1) ** -0.5

    def residual(x):
        gg = x[3] if g is None else g
        return w * (np.log(np.maximum(s[:k], 1e-300)) - np.log(model(x[0], x[1], gg, m, n)[:k]) - x[2])

    x0, lo, hi = [0.5, 0.005, 0.0], [0.0, 0.0, -5.0], [3.0, 1.0, 5.0]
    if g is None:
        x0, lo, hi = x0 + [1.0], lo + [0.2], hi + [5.0]
    return least_squares(residual, x0, bounds=(lo, hi)).x


def summarise(rows, keys):
    return {k: (float(np.mean([r[k] for r in rows])), float(np.min([r[k] for r in rows])), float(np.max([r[k] for r in rows])))
            for k in keys}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default=os.path.join(here, "..", "..", "shared", "pairs", "minilm-kjv"))
    ap.add_argument("--synth", action="append", default=[],
                    help="LABEL=DIR: a `deltaplan synth` output directory to compare with the pair (repeatable)")
    ap.add_argument("--json", help="write the fitted constants here")
    args = ap.parse_args()

    dev = spectra(load_deltas(args.pair))
    by_type = {"attention": [], "mlp": []}
    for name in sorted(dev):
        by_type[module_type(name)].append(name)

    constants = {}
    print("## Per-matrix fits (g fixed per type)\n")
    print("| matrix | shape | p | t_h | top-2 data/model | top-34 | top-128 | eff. rank |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, names in by_type.items():
        g = float(np.median([fit(dev[k][0], dev[k][1])[3] for k in names]))
        ps, hs = [], []
        for k in names:
            s, shape, _ = dev[k]
            p, th, _ = fit(s, shape, g)
            ps.append(p)
            hs.append(math.log(th + EPSILON))
            a, b = statistics(s), statistics(model(p, th, g, *shape))
            print(f"| {k} | {shape[0]}x{shape[1]} | {p:.3f} | {th:.4f} | {a['top2']:.3f}/{b['top2']:.3f} | "
                  f"{a['top34']:.3f}/{b['top34']:.3f} | {a['top128']:.3f}/{b['top128']:.3f} | {a['eff']:.0f}/{b['eff']:.0f} |")
        constants[kind] = {"edge": g, "exponentMean": float(np.mean(ps)), "exponentSD": float(np.std(ps)),
                           "logHeadMean": float(np.mean(hs)), "logHeadSD": float(np.std(hs)),
                           "correlation": float(np.corrcoef(ps, hs)[0, 1])}
    print("\n## Fitted constants (DeltaSpectrum.attention / .mlp)\n")
    for kind, c in constants.items():
        print(f"{kind}: edge g = {c['edge']:.3f}; p ~ N({c['exponentMean']:.4f}, {c['exponentSD']:.4f}^2); "
              f"ln(t_h + {EPSILON}) ~ N({c['logHeadMean']:.4f}, {c['logHeadSD']:.4f}^2); correlation {c['correlation']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(constants, f, indent=2, sort_keys=True)

    print("\n## The model's central shape at Llama-2-7B's dimensions\n")
    print("| type | shape | top-2 | top-34 | top-128 | top-968 | eff. rank | rank for 90% |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, shape in (("attention", (4096, 4096)), ("mlp", (11008, 4096)), ("attention", (384, 384)), ("mlp", (1536, 384))):
        c = constants[kind]
        st = statistics(model(c["exponentMean"], math.exp(c["logHeadMean"]) - EPSILON, c["edge"], *shape))
        print(f"| {kind} | {shape[0]}x{shape[1]} | {st['top2']:.3f} | {st['top34']:.3f} | {st['top128']:.3f} | "
              f"{st['top968']:.3f} | {st['eff']:.0f} | {st['r90']} |")

    if args.synth:
        sources = [("dev pair", dev)]
        for item in args.synth:
            label, _, directory = item.partition("=")
            sources.append((label, spectra(load_deltas(directory))))
        print(f"\n## Development pair vs `synth` at its shapes (mean, min-max over the matrices of a type)\n")
        print("| type | source | matrices | top-2 | top-34 | top-128 | last half | eff. rank | ‖ΔW‖/‖W‖ |")
        print("|---|---|---|---|---|---|---|---|---|")
        for kind in ("attention", "mlp"):
            for label, spec in sources:
                rows = []
                for k, (s, shape, rel) in spec.items():
                    if module_type(k) == kind:
                        st = statistics(s)
                        st["rel"] = rel
                        rows.append(st)
                if not rows:
                    continue
                sm = summarise(rows, ["top2", "top34", "top128", "tail", "eff", "rel"])
                cell = lambda k, f: f"{sm[k][0]:{f}} ({sm[k][1]:{f}}–{sm[k][2]:{f}})"
                print(f"| {kind} | {label} | {len(rows)} | {cell('top2', '.3f')} | {cell('top34', '.3f')} | "
                      f"{cell('top128', '.3f')} | {cell('tail', '.3f')} | {cell('eff', '.0f')} | {cell('rel', '.3f')} |")


if __name__ == "__main__":
    sys.exit(main())
