"""assemble: replaced tensors equal, everything else byte-identical, bad inputs refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from deltaplan_model.checkpoint import Checkpoint
from deltaplan_model.cli import main
from deltaplan_model.models import load_model

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sharded_copy(source: str, destination: str, shards: int = 3) -> str:
    """The model in `source` re-saved as `shards` safetensors shards with an index, plus a
    README and a subdirectory (extra files to be copied byte for byte)."""
    os.makedirs(destination)
    for name in os.listdir(source):
        if name != "model.safetensors":
            shutil.copyfile(os.path.join(source, name), os.path.join(destination, name))
    tensors = load_file(os.path.join(source, "model.safetensors"))
    names = sorted(tensors)
    weight_map, total = {}, 0
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[i::shards]}
        save_file(part, os.path.join(destination, file), metadata={"format": "pt", "shard": str(i)})
        weight_map.update({n: file for n in part})
        total += sum(t.numel() * t.element_size() for t in part.values())
    with open(os.path.join(destination, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(destination, "README.md"), "w") as f:
        f.write("tiny test model\n")
    os.makedirs(os.path.join(destination, "extra"))
    with open(os.path.join(destination, "extra", "notes.txt"), "w") as f:
        f.write("copied as is\n")
    return destination


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def files_under(directory: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory) for f in fs}


@pytest.fixture(scope="module")
def sharded(models, tmp_path_factory):
    return sharded_copy(models["llama_base"], str(tmp_path_factory.mktemp("sharded") / "llama"))


@pytest.mark.parametrize("keep_dtype", [False, True])
def test_assemble_sharded(sharded, tmp_path, capsys, keep_dtype):
    base = Checkpoint.open(sharded)
    replaced = {"model.layers.0.self_attn.k_proj.weight": torch.randn(32, 64, dtype=torch.float64),
                "model.layers.1.mlp.down_proj.weight": torch.randn(64, 128, dtype=torch.float64)}
    other = {"model.norm.weight": torch.randn(64, dtype=torch.float64)}
    first, second = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    save_file(replaced, first)
    save_file(other, second)
    replaced.update(other)
    out = str(tmp_path / "out")
    argv = ["assemble", sharded, "--replace", first, "--replace", second, "--out", out, "--format", "json"]
    assert main(argv + (["--keep-dtype"] if keep_dtype else [])) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["replaced"] == 3 and summary["converted"] == (0 if keep_dtype else 3)
    touched = {base.shard_of(n) for n in replaced}
    assert set(summary["shards_rewritten"]) == touched
    assert files_under(out) == files_under(sharded)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    for rel in files_under(sharded):
        if rel in touched or (rel == "model.safetensors.index.json" and keep_dtype):
            continue
        assert read_bytes(os.path.join(out, rel)) == read_bytes(os.path.join(sharded, rel)), rel
    new = Checkpoint.open(out)
    assert set(new.tensors) == set(base.tensors)
    for shard in touched:
        old_tensors = load_file(os.path.join(sharded, shard))
        new_tensors = load_file(os.path.join(out, shard))
        assert set(old_tensors) == set(new_tensors)
        with safe_open(os.path.join(out, shard), "pt") as f:
            assert f.metadata() == base.metadata[shard]
        for name, value in new_tensors.items():
            if name in replaced:
                expected = replaced[name] if keep_dtype else replaced[name].to(old_tensors[name].dtype)
                assert value.dtype == expected.dtype and torch.equal(value, expected)
            else:
                assert value.dtype == old_tensors[name].dtype
                assert value.view(torch.uint8).numpy().tobytes() == old_tensors[name].view(torch.uint8).numpy().tobytes()
    if keep_dtype:
        index = json.load(open(os.path.join(out, "model.safetensors.index.json")))
        sizes = sum(t.numel() * t.element_size() for s in base.shards for t in load_file(os.path.join(out, s)).values())
        assert index["metadata"]["total_size"] == sizes
    else:
        loaded = load_model(out, dtype="float32")
        params = dict(loaded.model.named_parameters())
        for name, value in replaced.items():
            assert torch.equal(params[name].detach(), value.float())


def test_assemble_single_file_bf16(models, tmp_path, capsys):
    """A BF16 single-file base: F32 replacements are rounded to BF16; a .bin file is not copied."""
    base_dir = str(tmp_path / "bf16")
    shutil.copytree(models["bert_base"], base_dir)
    tensors = load_file(os.path.join(base_dir, "model.safetensors"))
    save_file({n: t.to(torch.bfloat16) for n, t in tensors.items()}, os.path.join(base_dir, "model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(base_dir, "pytorch_model.bin"), "wb") as f:
        f.write(b"stale")
    value = torch.randn(64, 64)
    path = str(tmp_path / "r.safetensors")
    save_file({"encoder.layer.1.attention.self.query.weight": value}, path)
    out = str(tmp_path / "out")
    assert main(["assemble", base_dir, "--replace", path, "--out", out]) == 0
    stdout = capsys.readouterr().out
    assert "replaced 1 tensors (1 converted" in stdout and "skipped pytorch_model.bin" in stdout
    assert not os.path.exists(os.path.join(out, "pytorch_model.bin"))
    new = load_file(os.path.join(out, "model.safetensors"))
    assert torch.equal(new["encoder.layer.1.attention.self.query.weight"], value.to(torch.bfloat16))
    for name in ("config.json", "vocab.txt", "tokenizer_config.json", "tokenizer.json"):
        assert read_bytes(os.path.join(out, name)) == read_bytes(os.path.join(base_dir, name))


def test_assemble_errors(sharded, models, tmp_path, capsys):
    good = str(tmp_path / "good.safetensors")
    save_file({"model.layers.0.self_attn.q_proj.weight": torch.zeros(64, 64)}, good)
    unknown = str(tmp_path / "unknown.safetensors")
    save_file({"model.layers.7.self_attn.q_proj.weight": torch.zeros(64, 64)}, unknown)
    shape = str(tmp_path / "shape.safetensors")
    save_file({"model.layers.0.self_attn.k_proj.weight": torch.zeros(64, 64)}, shape)
    nan = str(tmp_path / "nan.safetensors")
    save_file({"model.layers.0.self_attn.q_proj.weight": torch.full((64, 64), float("nan"))}, nan)
    garbage = str(tmp_path / "garbage.safetensors")
    with open(garbage, "wb") as f:
        f.write(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    existing = tmp_path / "exists"
    existing.mkdir()
    out = str(tmp_path / "out")
    cases = [
        ([sharded, "--replace", unknown], "tensor model.layers.7.self_attn.q_proj.weight is not in the base checkpoint"),
        ([sharded, "--replace", shape], "has shape [64, 64], the base's has [32, 64]"),
        ([sharded, "--replace", str(tmp_path / "missing.safetensors")], "missing.safetensors: no such file"),
        ([sharded, "--replace", garbage], "garbage.safetensors: not a readable safetensors file"),
        ([sharded, "--replace", good, good], "is in both"),
        ([sharded, "--replace", nan], "NaN"),
        ([str(tmp_path / "nobase"), "--replace", good], "nobase: not a directory"),
        ([models["text"], "--replace", good], "not a directory"),
    ]
    for args, needle in cases:
        code = main(["assemble"] + args + ["--out", out])
        err = capsys.readouterr().err
        assert code == 1 and needle in err and "Traceback" not in err and err.count("\n") == 1, (needle, err)
        assert not os.path.exists(out)
    code = main(["assemble", sharded, "--replace", good, "--out", str(existing)])
    assert code == 1 and "already exists" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
    broken = str(tmp_path / "broken")
    shutil.copytree(sharded, broken)
    os.remove(os.path.join(broken, "model-00002-of-00003.safetensors"))
    code = main(["assemble", broken, "--replace", good, "--out", out])
    assert code == 1 and "model-00002-of-00003.safetensors: no such file" in capsys.readouterr().err


def test_command_line_in_a_subprocess(sharded, tmp_path):
    """The real entry point: exit status 1 and one line on stderr, no traceback; --help works."""
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    bad = subprocess.run([sys.executable, "-m", "deltaplan_model", "assemble", sharded, "--replace",
                          str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().endswith("none.safetensors: no such file") and bad.stderr.count("\n") == 1
    usage = subprocess.run([sys.executable, "-m", "deltaplan_model", "capture"], capture_output=True, text=True,
                           env=env, timeout=120)
    assert usage.returncode == 2 and "required" in usage.stderr and "Traceback" not in usage.stderr
