"""End-to-end distillation of a DeltaPlan artifact's σ and the scales of Û and V̂ᵀ (`deltaplan-model distil`).

`deltaplan distil export ARTIFACT` writes every segment's dequantized factors in F32, named
`<matrix>.seg<j>.u` ([h_out, c]), `.sigma` ([c]) and `.vt` ([c, h_in]), so that the artifact's
ΔŴ of a matrix is Σ_j u_j diag(sigma_j) vt_j. The student is the model with every such matrix
replaced by W_base + Σ_j diag(r_j) u_j diag(sigma_j ⊙ m_j) (vt_j ⊙ expand(g_j)), with a multiplier m
per singular value, r per row of each segment's Û and g per group of columns of each row of V̂ᵀ (all
initially 1): all are free in the artifact, whose rows carry their own F16 scales per group
(`deltaplan distil apply` multiplies them). The export names each segment's group width in columns
(its metadata `deltaplan.distil.vt_group_columns`; without it, no g is fitted). The multipliers
minimise, over the calibration windows,

    L(m) = Σ ‖Y_student − Y_model‖²_F / Σ ‖Y_nodelta − Y_model‖²_F

where Y is the last hidden state (fidelity's measure) and Y_nodelta the model with every listed
matrix at W_base (so √L is fidelity's relative error on the calibration text). Full-batch Adam,
`steps` steps; the multipliers of the lowest L seen are kept, so the result is never worse than
the artifact on the calibration text. Only σ and the F16 scales change: the codes and size of the
artifact stay. Quantization and truncation shrink ΔŴ coherently and spread its error over layers that a
per-matrix objective weighs one at a time; the multipliers see the whole network.

The output holds sigma ⊙ m as `<matrix>.seg<j>.sigma`, r as `<matrix>.seg<j>.u_rows` and g as
`<matrix>.seg<j>.vt_groups` ([c, groups]) (F32), the
artifact's hash from the factors file, and the settings and √L before and after, for
`deltaplan distil apply`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import asdict, dataclass, replace

import torch
from torch.func import functional_call

from .atomic import atomic_write
from .checkpoint import Checkpoint, load_tensors, read_header, save_safetensors
from .errors import DeltaPlanError
from .models import ForwardModule, LoadedModel
from .progress import progress

ARTIFACT_KEY = "deltaplan.artifact.delta.sha256"
VT_GROUP_COLUMNS_KEY = "deltaplan.distil.vt_group_columns"
_NAME = re.compile(r"^(?P<matrix>.+)\.seg(?P<segment>\d+)\.(?P<part>u|sigma|vt)$")


@dataclass
class Segment:
    prefix: str
    u: torch.Tensor  # [h_out, c]
    sigma: torch.Tensor  # [c]
    vt: torch.Tensor  # [c, h_in]
    vt_group_columns: int | None = None  # width of a group of V̂ᵀ's multipliers; None: none fitted

    @property
    def vt_groups(self) -> int:
        return -(-self.vt.shape[1] // self.vt_group_columns)

    def expand(self, groups: torch.Tensor) -> torch.Tensor:
        """[c, groups] multipliers as [c, h_in], each repeated over its group's columns."""
        return groups.repeat_interleave(self.vt_group_columns, dim=1)[:, : self.vt.shape[1]]


@dataclass
class DistilReport:
    matrices: int
    segments: int
    multipliers: int
    tokens: int
    steps: int
    relative_error_before: float
    relative_error_after: float
    best_step: int
    multiplier_min: float
    multiplier_mean: float
    multiplier_max: float
    seconds: float

    def to_json(self) -> dict:
        return asdict(self)


def read_factors(path: str) -> tuple[dict[str, list[Segment]], str]:
    """The segments of every matrix (in segment order) and the artifact hash of a factors file."""
    records, metadata = read_header(path)
    artifact = metadata.get(ARTIFACT_KEY)
    if not artifact:
        raise DeltaPlanError(f"{path}: no {ARTIFACT_KEY} in its metadata: not a factors file of `deltaplan distil export`")
    group_columns = {}
    if VT_GROUP_COLUMNS_KEY in metadata:
        try:
            group_columns = json.loads(metadata[VT_GROUP_COLUMNS_KEY])
        except ValueError as error:
            raise DeltaPlanError(f"{path}: metadata {VT_GROUP_COLUMNS_KEY} is not JSON: {error}") from None
        if not isinstance(group_columns, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                          for v in group_columns.values()):
            raise DeltaPlanError(f"{path}: metadata {VT_GROUP_COLUMNS_KEY} must map segment prefixes to positive integers")
    parts: dict[str, dict[int, dict[str, str]]] = {}
    for name in records:
        m = _NAME.match(name)
        if m is None:
            raise DeltaPlanError(f"{path}: tensor {name} is not <matrix>.seg<j>.u|sigma|vt")
        parts.setdefault(m["matrix"], {}).setdefault(int(m["segment"]), {})[m["part"]] = name
    if not parts:
        raise DeltaPlanError(f"{path}: no factors (the artifact has no SVD segments)")
    tensors = load_tensors(path)
    out: dict[str, list[Segment]] = {}
    for matrix, segments in sorted(parts.items()):
        listed = []
        for j in sorted(segments):
            names = segments[j]
            prefix = f"{matrix}.seg{j}"
            missing = [p for p in ("u", "sigma", "vt") if p not in names]
            if missing:
                raise DeltaPlanError(f"{path}: segment {prefix} lacks {', '.join(prefix + '.' + p for p in missing)}")
            u, sigma, vt = (tensors[names[p]].to(torch.float32) for p in ("u", "sigma", "vt"))
            if u.dim() != 2 or sigma.dim() != 1 or vt.dim() != 2 or u.shape[1] != sigma.shape[0] or vt.shape[0] != sigma.shape[0]:
                raise DeltaPlanError(f"{path}: segment {prefix} has u {list(u.shape)}, sigma {list(sigma.shape)}, vt {list(vt.shape)}; "
                                     "expected [h_out, c], [c], [c, h_in]")
            if listed and (u.shape[0] != listed[0].u.shape[0] or vt.shape[1] != listed[0].vt.shape[1]):
                raise DeltaPlanError(f"{path}: segment {prefix} is {u.shape[0]} × {vt.shape[1]}, the matrix's first segment "
                                     f"{listed[0].u.shape[0]} × {listed[0].vt.shape[1]}")
            for part, t in (("u", u), ("sigma", sigma), ("vt", vt)):
                if not torch.isfinite(t).all():
                    raise DeltaPlanError(f"{path}: tensor {prefix}.{part} holds NaN or infinite values")
            width = group_columns.pop(prefix, None)
            if VT_GROUP_COLUMNS_KEY in metadata and width is None:
                raise DeltaPlanError(f"{path}: metadata {VT_GROUP_COLUMNS_KEY} has no group width for segment {prefix}")
            listed.append(Segment(prefix, u, sigma, vt, width))
        out[matrix] = listed
    if group_columns:
        raise DeltaPlanError(f"{path}: metadata {VT_GROUP_COLUMNS_KEY} names {sorted(group_columns)[0]}, which is not a segment of the file")
    return out, artifact


def _text_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def distil(loaded: LoadedModel, windows: torch.Tensor, factors: dict[str, list[Segment]], base_dir: str,
           steps: int, lr: float, batch: int) -> tuple[dict[str, torch.Tensor], DistilReport]:
    """Fits the multipliers; returns the new sigma, the Û row and the V̂ᵀ group multipliers by tensor name, and the report."""
    started = time.monotonic()
    params = dict(loaded.model.named_parameters())
    for matrix, segments in factors.items():
        if matrix not in params:
            raise DeltaPlanError(f"factors name {matrix}, which is not a parameter of {loaded.directory}")
        shape = (segments[0].u.shape[0], segments[0].vt.shape[1])
        if tuple(params[matrix].shape) != shape:
            raise DeltaPlanError(f"{matrix} is {list(params[matrix].shape)} in {loaded.directory}, the factors make {list(shape)}")
    base_checkpoint = Checkpoint.open(base_dir)
    missing = [m for m in factors if m not in base_checkpoint.tensors]
    if missing:
        raise DeltaPlanError(f"--base {base_dir} has no tensor {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    base = {n: t.to(device=loaded.device, dtype=loaded.dtype) for n, t in base_checkpoint.load(list(factors)).items()}
    for matrix, w in base.items():
        if w.shape != params[matrix].shape:
            raise DeltaPlanError(f"--base {base_dir}: {matrix} is {list(w.shape)}, {loaded.directory} has {list(params[matrix].shape)}")
    device, dtype = loaded.device, loaded.dtype
    segments = {m: [replace(s, u=s.u.to(device, dtype), sigma=s.sigma.to(device, dtype), vt=s.vt.to(device, dtype)) for s in segs]
                for m, segs in factors.items()}

    def ones(*shape: int) -> torch.Tensor:
        return torch.ones(*shape, device=device, dtype=dtype, requires_grad=True)

    # Per segment: the multipliers of its singular values, of its Û's rows and of its V̂ᵀ's groups.
    multipliers = {s.prefix: (ones(s.sigma.shape[0]), ones(s.u.shape[0]),
                              ones(s.sigma.shape[0], s.vt_groups) if s.vt_group_columns else None)
                   for segs in segments.values() for s in segs}

    def weights() -> dict[str, torch.Tensor]:
        out = {}
        for m, segs in segments.items():
            w = base[m]
            for s in segs:
                columns, rows, groups = multipliers[s.prefix]
                vt = s.vt if groups is None else s.vt * s.expand(groups)
                w = w + (rows[:, None] * s.u * (s.sigma * columns)) @ vt
            out[f"inner.{m}"] = w
        return out

    module = ForwardModule(loaded)
    chunks = windows.split(batch)

    def hidden(ids: torch.Tensor, replaced: dict[str, torch.Tensor]) -> torch.Tensor:
        y, _ = functional_call(module, replaced, (ids.to(device),), tie_weights=True, strict=False)
        return y

    with torch.no_grad():
        targets = [loaded.final_outputs(ids.to(device))[0] for ids in chunks]
        nodelta = {f"inner.{m}": w for m, w in base.items()}
        norm = sum(float(((hidden(ids, nodelta).double() - y.double()) ** 2).sum()) for ids, y in zip(chunks, targets))
    if norm == 0.0:
        raise DeltaPlanError(f"--base {base_dir} gives {loaded.directory}'s last hidden state on this text: nothing to distil")

    def loss_and_grad(backward: bool) -> float:
        total = 0.0
        for ids, y in zip(chunks, targets):
            part = ((hidden(ids, weights()) - y) ** 2).sum() / norm
            if backward:
                part.backward()
            total += float(part.detach())
        return total

    optimizer = torch.optim.Adam([t for triple in multipliers.values() for t in triple if t is not None], lr=lr)

    def snapshot() -> dict[str, tuple[torch.Tensor, ...]]:
        return {p: tuple(t.detach().clone() for t in triple if t is not None) for p, triple in multipliers.items()}

    best = (math.inf, 0, snapshot())
    before = None
    for step in progress(range(steps + 1), total=steps + 1, desc="distil"):
        optimizer.zero_grad()
        loss = loss_and_grad(backward=step < steps)
        if before is None:
            before = loss
        if loss < best[0]:
            best = (loss, step, snapshot())
        if step < steps:
            optimizer.step()
    loss, best_step, kept = best
    fitted = {}
    lows, highs, total, count = [], [], 0.0, 0
    for segs in segments.values():
        for s in segs:
            columns, rows, *groups = kept[s.prefix]
            fitted[f"{s.prefix}.sigma"] = (s.sigma * columns).to(torch.float32).cpu().contiguous()
            fitted[f"{s.prefix}.u_rows"] = rows.to(torch.float32).cpu().contiguous()
            if groups:
                fitted[f"{s.prefix}.vt_groups"] = groups[0].to(torch.float32).cpu().contiguous()
            # The effective scale of a group of vector k in row i is r_i·m_k·g_kj: its extremes are
            # products of the extremes of r and of m⊗g, their sum the product of their sums.
            vector = (columns[:, None] * groups[0] if groups else columns[:, None]).double().cpu()
            r = rows.double().cpu()
            products = [float(a) * float(b) for a in (r.min(), r.max()) for b in (vector.min(), vector.max())]
            lows.append(min(products))
            highs.append(max(products))
            total += float(r.sum()) * float(vector.sum())
            count += r.numel() * vector.numel()
    report = DistilReport(
        matrices=len(segments), segments=sum(len(s) for s in segments.values()),
        multipliers=sum(t.numel() for triple in kept.values() for t in triple),
        tokens=int(windows.numel()), steps=steps, relative_error_before=math.sqrt(before), relative_error_after=math.sqrt(loss),
        best_step=best_step, multiplier_min=min(lows), multiplier_mean=total / count, multiplier_max=max(highs), seconds=time.monotonic() - started)
    return fitted, report


def write_fitted(path: str, fitted: dict[str, torch.Tensor], artifact: str, report: DistilReport, settings: dict[str, str]) -> None:
    metadata = {ARTIFACT_KEY: artifact, **{f"deltaplan.distil.{k}": v for k, v in settings.items()},
                "deltaplan.distil.relative_error_before": f"{report.relative_error_before:.6g}",
                "deltaplan.distil.relative_error_after": f"{report.relative_error_after:.6g}"}
    atomic_write(path, lambda tmp: save_safetensors(fitted, tmp, metadata=metadata))


def settings_of(args, windows: torch.Tensor) -> dict[str, str]:
    return {"model": args.model, "base": args.base, "text": args.text, "text_sha256": _text_sha256(args.text),
            "samples": str(windows.shape[0]), "seq_len": str(windows.shape[1]), "seed": str(args.seed), "steps": str(args.steps),
            "lr": repr(args.lr), "batch": str(args.batch), "dtype": args.dtype}
