"""The table of Benchmarks/run-quality.sh: per candidate, proxy, predicted, J and end-to-end error.

Reads WORK/runs/NAME/{plan,evaluate}.json, WORK/fidelity.json and WORK/score.json and prints a
markdown table plus Spearman rank correlations of each per-plan figure with the end-to-end error.

- predicted: the error model's predicted relative error of the plan in its objective,
  Σ predicted / Σ L(ΔW) (activation: L = ‖ΔW X‖²; paired: the sensitivity objective of
  Docs/calibration-format.md);
- verified: a plan made with `plan --verify`: its segments quantized as `compress` will and the
  errors measured (what the plan file then records as predicted; the model's figure is kept in
  report.verification and shown as predicted here);
- proxy: `deltaplan evaluate`'s actual relative activation error of the artifact (same ratio);
- actual sensitivity error: `evaluate`'s actual relative error in the store's sensitivity objective
  (paired), whatever objective the plan minimized;
- actual/predicted, actual/verified: the plan's actual error in its own objective over the model's
  prediction and over the verified one;
- J: the companion's joint first-order prediction of the last hidden state's error along
  E = W_candidate − W_finetuned (`deltaplan-model score`, one JVP), √J / ‖Y_nodelta − Y_finetuned‖_F
  on the same held-out tokens as the end-to-end figure;
- NAME+distil: NAME's artifact with σ and the scales of Û and V̂ᵀ fitted end to end (`deltaplan distil`); same plan and size, so
  its prediction is NAME's and is not shown;
- end to end: ‖Y_candidate − Y_finetuned‖_F / ‖Y_nodelta − Y_finetuned‖_F of the last hidden state
  on held-out chapters (`deltaplan-model fidelity`): 0 = the fine-tuned model, 1 = every planned
  delta dropped.

Usage: python3 report.py WORK
"""
import json
import os
import sys

import numpy as np


def ranks(values):
    """Average ranks (ties share the mean rank), 0-based."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="mergesort")
    r = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return r


def spearman(x, y):
    if len(x) < 3:
        return float("nan")
    rx, ry = ranks(x), ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def by_name(document):
    """The per-candidate entries of a companion report, keyed by candidate name."""
    return {c["name"]: c for c in document["candidates"]} if document else {}


def main():
    work = sys.argv[1]
    fidelity = by_name(json.load(open(os.path.join(work, "fidelity.json"))))
    score_path = os.path.join(work, "score.json")
    score = by_name(json.load(open(score_path))) if os.path.exists(score_path) else {}
    rows = []
    runs = os.path.join(work, "runs")
    bitdelta_proxy = bitdelta_sensitivity = None
    for name in sorted(os.listdir(runs)):
        d = os.path.join(runs, name)
        if os.path.exists(os.path.join(d, "skipped")):
            rows.append(dict(name=name, skipped=open(os.path.join(d, "skipped")).read().strip()))
            continue
        plan = json.load(open(os.path.join(d, "plan.json")))
        ev = json.load(open(os.path.join(d, "evaluate.json")))
        bitdelta_proxy = ev["total"]["bitDeltaRelativeError"]
        bitdelta_sensitivity = ev["total"].get("bitDeltaObjectiveRelativeError")
        distilled = name.endswith("+distil")
        verification = (plan.get("report") or {}).get("verification")
        predicted = verification["modelPredictedRelativeError"] if verification else plan["totals"]["predictedRelativeError"]
        verified = plan["totals"]["predictedRelativeError"] if verification else None
        rows.append(dict(name=name, alpha=plan["totals"]["alpha"], scope=plan.get("scope"), objective=plan.get("objective"),
                         predicted=None if distilled else predicted, verified=None if distilled else verified,
                         proxy=ev["total"]["planRelativeError"], sensitivity=ev["total"].get("planObjectiveRelativeError")))
    rows.append(dict(name="bitdelta", alpha=1 / 16, predicted=None, proxy=bitdelta_proxy, sensitivity=bitdelta_sensitivity))
    for r in rows:
        if "skipped" in r:
            continue
        f = fidelity.get(r["name"])
        if f is None:  # a run cut short: its plans stand, but it has no end-to-end figure
            r["skipped"] = f"{r['name']}: not in fidelity.json (no end-to-end figure)"
            continue
        r["e2e"] = f["relative_error"]
        r["cosine"] = f.get("mean_cosine")
        s = score.get(r["name"])
        r["J"] = s.get("predicted_relative_error") if s else None

    def fmt(x, spec=".4f"):
        return "—" if x is None else format(x, spec)

    def actual_over(r, key):
        actual = r.get("sensitivity") if r.get("objective") in ("paired", "kronecker") else r.get("proxy")
        return actual / r[key] if actual is not None and r.get(key) else None

    print("| candidate | α | objective | predicted rel. error (objective) | verified (measured) | proxy: actual rel. act. error | actual rel. sensitivity error | actual/predicted | actual/verified | J (rel.) | end to end: rel. last-hidden error | cosine |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['name']} | {r['skipped']} | | | | | | | | | | |")
            continue
        print(f"| {r['name']} | {fmt(r['alpha'], '.5f')} | {r.get('objective') or '—'} | {fmt(r['predicted'])} | {fmt(r.get('verified'))} | {fmt(r['proxy'])} | {fmt(r.get('sensitivity'))} | "
              f"{fmt(actual_over(r, 'predicted'), '.3f')} | {fmt(actual_over(r, 'verified'), '.3f')} | {fmt(r['J'])} | {fmt(r['e2e'])} | {fmt(r['cosine'], '.6f')} |")
    done = [r for r in rows if "skipped" not in r]
    print()
    for key, label in (("predicted", "the error model"), ("verified", "verified plans")):
        ratios = [x for x in (actual_over(r, key) for r in done) if x is not None]
        if ratios:
            inside = sum(0.95 <= x <= 1.05 for x in ratios)
            print(f"actual/predicted by {label}: {min(ratios):.3f}–{max(ratios):.3f} over {len(ratios)} plans, "
                  f"{inside} within [0.95, 1.05]")
    for key, label in (("proxy", "proxy"), ("sensitivity", "actual sensitivity error"), ("J", "J")):
        pairs = [(r[key], r["e2e"]) for r in done if r.get(key) is not None]
        if pairs:
            rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
            print(f"Spearman({label}, end to end) over {len(pairs)} candidates: {rho:.3f}")
    # Predictions are comparable only within one objective: the strongest (that of the default plan).
    default = next((r for r in done if r["name"].startswith("default-")), None)
    if default is not None:
        for key in ("predicted", "verified"):
            pairs = [(r[key], r["e2e"]) for r in done if r.get(key) is not None and r.get("objective") == default.get("objective")]
            if pairs:
                rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
                print(f"Spearman({key}, end to end) over the {len(pairs)} plans {key} in the default's objective ({default.get('objective')}): {rho:.3f}")
    e2e = {r["name"]: r["e2e"] for r in done}
    ref_name = "delta-come-published-1-16"
    if ref_name in e2e:
        ref = e2e[ref_name]
        print(f"Delta-CoMe as published at 1/16 (preset:delta-come, paper order): {ref:.4f}")
        for name, label in (("default-1-16", "default plan"), ("default-1-16+distil", "default plan, distilled")):
            if name in e2e:
                print(f"{label} at 1/16: {e2e[name]:.4f}; reduction against Delta-CoMe as published "
                      f"{1 - e2e[name] / ref:+.1%} (goal: at least +40%)")
        if ref_name + "+distil" in e2e:
            print(f"Delta-CoMe as published at 1/16, distilled: {e2e[ref_name + '+distil']:.4f}")
        for budget in ("1-16", "1-32"):
            own = {n: v for n, v in e2e.items() if f"-{budget}" in n and not n.startswith("delta-come-published")}
            if own:
                best = min(own, key=own.get)
                print(f"best at {budget.replace('-', '/')}: {best} {own[best]:.4f} = "
                      f"{own[best] / ref:.3f} x Delta-CoMe as published at 1/16 ({ref:.4f}); reduction {1 - own[best] / ref:+.1%}")


if __name__ == "__main__":
    main()
