"""`deltaplan-model`: parses, calls the library, formats. Bad input: one line on stderr naming
the file, tensor or field, exit status 1 (2 for a malformed command line), no traceback."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

from . import __version__
from .errors import DeltaPlanError

EXIT_INPUT = 1


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run the model (default cpu)")
    p.add_argument("--dtype", choices=["float32", "float64", "bfloat16", "float16"], default="float32",
                   help="precision to run the model in (default float32)")


def _text_options(p: argparse.ArgumentParser, samples: int, seq_len: int | None) -> None:
    p.add_argument("--text", required=True, metavar="FILE",
                   help="plain UTF-8 text (paragraphs = documents), or .jsonl with a string field \"text\" per line")
    p.add_argument("--samples", type=_positive, default=samples, metavar="N", help=f"number of windows (default {samples})")
    p.add_argument("--seq-len", type=_positive, default=seq_len, metavar="L",
                   help="tokens per window (default 512, or the model's max_position_embeddings if smaller)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of windows, probes and pairs (default 0)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default table)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deltaplan-model", description="DeltaPlan's PyTorch companion "
                                     "(Hugging Face models from local directories only).")
    parser.add_argument("--version", action="version", version=f"deltaplan-model {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("capture", help="write a calibration file (format 2)",
                       description="Run calibration text through the model and write, per selected linear module, "
                                   "the input Gram H, token count, sampled input rows, and (unless --no-sensitivities) "
                                   "the output-gradient Gram G and paired gradient rows.")
    c.add_argument("model", metavar="MODEL_DIR")
    _text_options(c, samples=64, seq_len=None)
    c.add_argument("--out", required=True, metavar="FILE", help="calibration file to write (.safetensors)")
    c.add_argument("--include", nargs="+", action="extend", metavar="RE",
                   help="regexes on weight names replacing the default selection (q/k/v/o/gate/up/down_proj, BERT "
                        "query/key/value/attention.output.dense/intermediate.dense/output.dense)")
    c.add_argument("--exclude", nargs="+", action="extend", metavar="RE", help="regexes on weight names to leave out")
    c.add_argument("--probes", type=_positive, default=4, metavar="P", help="probes per window, so per token (default 4)")
    c.add_argument("--rows", type=_count, default=2048, metavar="n",
                   help="sampled (token, probe) pairs written as .inputs/.grads rows (default 2048; 0: none)")
    c.add_argument("--diagonal-output", action="store_true", help="write only the diagonal of G")
    c.add_argument("--no-sensitivities", action="store_true", help="inputs only: no G, no gradient rows")
    c.add_argument("--gram-dtype", choices=["f32", "f64"], default="f32", help="dtype of .gram and .out_gram (default f32)")
    _model_options(c)
    _format_option(c)

    s = sub.add_parser("score", help="predict each candidate's end-to-end error to first order (one JVP)",
                       description="J = Σ‖δY‖² of the last hidden state along E = W_candidate − W_model for all "
                                   "differing tensors at once; predicted relative error √J/‖Y_base − Y_model‖ (with "
                                   "--base) or √J/‖Y_model‖; causal LMs: predicted mean KL per token.")
    s.add_argument("model", metavar="MODEL_DIR", help="the reference (fine-tuned) model")
    _text_options(s, samples=16, seq_len=None)
    s.add_argument("--candidates", required=True, nargs="+", action="extend", metavar="[NAME=]PATH",
                   help="model directories or safetensors files of replaced tensors")
    s.add_argument("--base", metavar="DIR", help="base model: relative errors are then 0 = MODEL_DIR, 1 = the base")
    _model_options(s)
    _format_option(s)

    f = sub.add_parser("fidelity", help="measure candidates against the reference model on held-out text",
                       description="Relative error of the last hidden state ‖Y_c − Y_ref‖/‖Y_base − Y_ref‖ (with "
                                   "--base, else /‖Y_ref‖), mean cosine of mean-pooled embeddings (encoders), "
                                   "perplexity and mean KL(p_ref ‖ p_c) per token (causal LMs).")
    f.add_argument("reference", metavar="REFERENCE_DIR", help="the fine-tuned model")
    _text_options(f, samples=16, seq_len=None)
    f.add_argument("--candidates", required=True, nargs="+", action="extend", metavar="[NAME=]DIR",
                   help="candidate model directories")
    f.add_argument("--base", metavar="DIR", help="base model (relative error 1)")
    _model_options(f)
    _format_option(f)

    d = sub.add_parser("distil", help="fit an artifact's σ and the scales of Û and V̂ᵀ end to end (for `deltaplan distil apply`)",
                       description="A multiplier per singular value, per row of each segment's Û and per group of each row of V̂ᵀ, of the factors "
                                   "`deltaplan distil export` wrote, fitted by full-batch Adam so that base + ΔŴ reproduces "
                                   "MODEL_DIR's last hidden state on the text; writes them for `deltaplan distil apply`.")
    d.add_argument("model", metavar="MODEL_DIR", help="the fine-tuned model (the teacher)")
    _text_options(d, samples=64, seq_len=None)
    d.add_argument("--base", required=True, metavar="DIR", help="the base checkpoint the artifact's delta applies to")
    d.add_argument("--factors", required=True, metavar="FILE", help="the factors file of `deltaplan distil export`")
    d.add_argument("--out", required=True, metavar="FILE", help="the file of fitted values to write (atomically)")
    d.add_argument("--steps", type=_positive, default=50, metavar="N", help="Adam steps over all windows (default 50)")
    d.add_argument("--lr", type=_positive_float, default=0.01, metavar="LR", help="Adam's learning rate (default 0.01)")
    d.add_argument("--batch", type=_positive, default=16, metavar="B", help="windows per forward pass (default 16)")
    _model_options(d)
    _format_option(d)

    a = sub.add_parser("assemble", help="a model directory: the base with named tensors replaced",
                       description="Copy BASE_DIR byte for byte, rewriting the safetensors shards that hold a "
                                   "replaced tensor; the result appears at --out only when complete.")
    a.add_argument("base", metavar="BASE_DIR")
    a.add_argument("--replace", required=True, nargs="+", action="extend", metavar="FILE",
                   help="safetensors files of tensors named as in the base")
    a.add_argument("--out", required=True, metavar="DIR", help="directory to create (must not exist)")
    a.add_argument("--keep-dtype", action="store_true", help="keep the replacement's dtype instead of the base's")
    _format_option(a)
    return parser


def _print_table(headers: list[str], rows: list[list[object]]) -> None:
    def cell(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v)

    text = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for r in text:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _emit_json(obj: object) -> None:
    print(json.dumps(obj, indent=2))


def _windows(loaded, args):
    from .text import make_windows

    seq_len = args.seq_len
    if seq_len is None:
        seq_len = min(512, loaded.max_positions() or 512)
    return make_windows(loaded.tokenizer, args.text, args.samples, seq_len, args.seed, loaded.kind, loaded.max_positions())


def run_capture(args) -> None:
    from .calibration import write_calibration
    from .capture import CaptureOptions, capture
    from .models import load_model
    from .selection import Selection

    selection = Selection(args.include, args.exclude)
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    windows = _windows(loaded, args)
    modules = selection.select(loaded.model)
    options = CaptureOptions(probes=args.probes, rows=args.rows, diagonal_output=args.diagonal_output,
                             sensitivities=not args.no_sensitivities, seed=args.seed)
    result = capture(loaded, windows, modules, options)
    S, L = windows.shape
    source = (f"deltaplan-model {__version__} capture: {loaded.spec.class_name} from {os.path.abspath(args.model)}; "
              f"{S} windows x {L} tokens of {os.path.basename(args.text)}; {args.dtype} on {args.device}")
    write_calibration(args.out, result, source, args.gram_dtype)
    summary = {
        "out": args.out, "modules": len(result.modules), "entries": len(result.grams), "aliases": len(result.aliases),
        "tokens": result.tokens, "windows": S, "seq_len": L, "rows": result.rows, "probes": result.probes,
        "objective": result.objective, "diagonal_output": bool(args.diagonal_output and result.out_grams),
        "seed": args.seed,
    }
    if args.format == "json":
        _emit_json(summary)
    else:
        sens = f", {result.probes} probes ({result.objective})" if result.out_grams else ", no sensitivities"
        print(f"wrote {args.out}: {summary['modules']} modules ({summary['entries']} input entries, "
              f"{summary['aliases']} aliases), {result.tokens} tokens ({S} x {L}){sens}, {result.rows} paired rows")


def run_score(args) -> None:
    from .candidates import parse_candidates
    from .models import load_model
    from .score import score

    candidates = parse_candidates(args.candidates)
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    base = load_model(args.base, device=args.device, dtype=args.dtype, tokenizer=False) if args.base else None
    windows = _windows(loaded, args)
    rows = score(loaded, windows, candidates, base)
    if args.format == "json":
        _emit_json({"model": args.model, "kind": loaded.kind, "base": args.base, "tokens": int(windows.numel()),
                    "normalization": rows[0].normalization if rows else None,
                    "candidates": [r.to_json() for r in rows]})
        return
    headers = ["candidate", "modules", "J", "pred. error", "pred. rel. error"]
    if loaded.kind == "causal-lm":
        headers.append("pred. mean KL")
    table = []
    for r in rows:
        line = [r.name, r.modules, r.J, r.predicted_error, r.predicted_relative_error]
        if loaded.kind == "causal-lm":
            line.append(r.predicted_mean_kl)
        table.append(line)
    _print_table(headers, table)
    norm = "‖Y_base − Y_model‖" if args.base else "‖Y_model‖ (no --base)"
    print(f"\n{int(windows.numel())} tokens; J = Σ‖δY‖² of the last hidden state; relative error = √J / {norm}"
          + ("; KL in nats per token" if loaded.kind == "causal-lm" else ""))


def run_fidelity(args) -> None:
    from .candidates import parse_candidates
    from .fidelity import fidelity
    from .models import load_model

    candidates = parse_candidates(args.candidates)
    reference = load_model(args.reference, device=args.device, dtype=args.dtype)
    windows = _windows(reference, args)

    def load(directory: str):
        return load_model(directory, device=args.device, dtype=args.dtype, tokenizer=False)

    report = fidelity(reference, windows, candidates, load, args.base)
    if args.format == "json":
        out = report.to_json()
        out.update({"kind": reference.kind, "tokens": int(windows.numel())})
        _emit_json(out)
        return
    causal = reference.kind == "causal-lm"
    headers = ["model", "error", "rel. error"] + (["perplexity", "mean KL"] if causal else ["mean cosine"])
    table = []
    for r in [report.reference] + ([report.base] if report.base else []) + report.candidates:
        table.append([r.name, r.error, r.relative_error] + ([r.perplexity, r.mean_kl] if causal else [r.mean_cosine]))
    _print_table(headers, table)
    norm = "‖Y_base − Y_ref‖ (0 = reference, 1 = base)" if args.base else "‖Y_ref‖ (absolute: no --base given)"
    print(f"\n{int(windows.numel())} tokens; error = ‖Y_c − Y_ref‖ of the last hidden state; relative error = error / {norm}"
          + ("; KL(p_ref ‖ p_c) in nats per token" if causal else "; cosine of mean-pooled embeddings"))


def run_assemble(args) -> None:
    from .assemble import assemble

    summary = assemble(args.base, args.replace, args.out, keep_dtype=args.keep_dtype)
    if args.format == "json":
        _emit_json(summary.to_json())
        return
    print(f"wrote {args.out}: replaced {summary.replaced} tensors ({summary.converted} converted to the base's dtype) "
          f"in {len(summary.shards_rewritten)} shard(s); copied {len(summary.files_copied)} files"
          + (f"; skipped {', '.join(summary.skipped)}" if summary.skipped else ""))


def run_distil(args) -> None:
    from .distil import distil, read_factors, settings_of, write_fitted
    from .models import load_model

    factors, artifact = read_factors(args.factors)
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    windows = _windows(loaded, args)
    fitted, report = distil(loaded, windows, factors, args.base, args.steps, args.lr, args.batch)
    write_fitted(args.out, fitted, artifact, report, settings_of(args, windows))
    if args.format == "json":
        _emit_json({"out": args.out, **report.to_json()})
        return
    print(f"wrote {args.out}: {report.multipliers} multipliers (singular values, Û rows, V̂ᵀ groups) of {report.segments} segments "
          f"in {report.matrices} matrices; "
          f"relative error of the last hidden state on the text {report.relative_error_before:.4g} -> "
          f"{report.relative_error_after:.4g} (best at step {report.best_step} of {report.steps}); effective scales "
          f"{report.multiplier_min:.3g} to {report.multiplier_max:.3g}, mean {report.multiplier_mean:.3g}; "
          f"{report.tokens} tokens, {report.seconds:.0f} s")


COMMANDS = {"capture": run_capture, "score": run_score, "fidelity": run_fidelity, "distil": run_distil,
            "assemble": run_assemble}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore", FutureWarning)  # deprecation chatter of torch/transformers, not ours
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        COMMANDS[args.command](args)
    except DeltaPlanError as e:
        print(f"deltaplan-model {args.command}: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as e:  # the environment (permissions, a full disk), named by its file
        where = f"{e.filename}: " if e.filename else ""
        print(f"deltaplan-model {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("deltaplan-model: interrupted", file=sys.stderr)
        return 130
    return 0


def entry() -> None:
    sys.exit(main())
