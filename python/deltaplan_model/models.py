"""Loading a Hugging Face model from a local directory, and its final outputs.

Kinds:
- `causal-lm`: a causal language model (`...ForCausalLM`, `...LMHeadModel`). Final outputs: the
  base model's last hidden state (after the final norm) and the logits `head(last hidden state)`.
- `encoder`: anything else with a base model (BERT-style encoders, `...Model` classes, heads
  such as `...ForMaskedLM`). Final output: the base model's last hidden state.

The class is the one `config.json` names in `architectures` (else chosen from `model_type`), so
that module names equal the checkpoint's weight names without `.weight`; this is checked.
Nothing is ever fetched from the Hugging Face hub.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .checkpoint import Checkpoint
from .errors import DeltaPlanError

CAUSAL = "causal-lm"
ENCODER = "encoder"

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
_UNSUPPORTED_SUFFIXES = ("ForConditionalGeneration", "ForSeq2SeqLM", "EncoderDecoderModel")


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    transformers.logging.set_verbosity_error()
    try:
        transformers.logging.disable_progress_bar()
    except AttributeError:
        pass
    return transformers


@dataclass(frozen=True)
class ModelSpec:
    directory: str
    config: dict
    kind: str
    class_name: str


def read_config(directory: str) -> dict:
    if not os.path.isdir(directory):
        raise DeltaPlanError(f"{directory}: not a directory (models are read from local directories only)")
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise DeltaPlanError(f"{directory}: no config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeltaPlanError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise DeltaPlanError(f"{path}: must hold a JSON object")
    return config


def inspect_model(directory: str) -> ModelSpec:
    """Decides the kind and class of the model in `directory` from its config.json."""
    config = read_config(directory)
    path = os.path.join(directory, "config.json")
    transformers = _transformers()
    architectures = config.get("architectures")
    if architectures is not None:
        if not isinstance(architectures, list) or not architectures or not all(isinstance(a, str) for a in architectures):
            raise DeltaPlanError(f"{path}: field \"architectures\" must be a non-empty list of class names")
        name = architectures[0]
        if name.endswith(_UNSUPPORTED_SUFFIXES):
            raise DeltaPlanError(f"{path}: architecture {name} (encoder-decoder or multimodal) is not supported; "
                                 "use a causal LM or an encoder")
        cls = getattr(transformers, name, None)
        if cls is None or not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise DeltaPlanError(f"{path}: architecture {name} is not a model class of transformers "
                                 f"{transformers.__version__} (custom code is never run)")
        kind = CAUSAL if name.endswith(_CAUSAL_SUFFIXES) else ENCODER
        return ModelSpec(directory, config, kind, name)
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise DeltaPlanError(f"{path}: needs \"architectures\" or \"model_type\" to choose a model class")
    from transformers.models.auto import modeling_auto as auto
    causal = auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    masked = auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES.get(model_type)
    base = auto.MODEL_MAPPING_NAMES.get(model_type)
    if causal and not masked:
        return ModelSpec(directory, config, CAUSAL, causal)
    if base:
        return ModelSpec(directory, config, ENCODER, base if isinstance(base, str) else base[0])
    raise DeltaPlanError(f"{path}: model_type {model_type!r} is not known to transformers {transformers.__version__}")


@dataclass
class LoadedModel:
    """A model in eval mode with frozen parameters, its tokenizer and its checkpoint."""

    spec: ModelSpec
    model: nn.Module
    checkpoint: Checkpoint
    device: torch.device
    dtype: torch.dtype
    tokenizer: object | None = None
    _base: nn.Module = field(init=False, repr=False)
    _head: nn.Module | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        base = getattr(self.model, "base_model", None)
        if not isinstance(base, nn.Module):
            raise DeltaPlanError(f"{self.spec.directory}: {self.spec.class_name} has no base model")
        self._base = base
        self._head = self.model.get_output_embeddings() if self.kind == CAUSAL else None
        if self.kind == CAUSAL and not isinstance(self._head, nn.Module):
            raise DeltaPlanError(f"{self.spec.directory}: {self.spec.class_name} has no output head")

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def directory(self) -> str:
        return self.spec.directory

    @property
    def config(self):
        return self.model.config

    def final_outputs(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(last hidden state [B, L, d], logits [B, L, V] or None for encoders)."""
        kwargs = {"use_cache": False} if self.kind == CAUSAL else {}
        hidden = self._base(input_ids=input_ids, **kwargs).last_hidden_state
        logits = self._head(hidden) if self._head is not None else None
        return hidden, logits

    def max_positions(self) -> int | None:
        value = getattr(self.model.config, "max_position_embeddings", None)
        return int(value) if isinstance(value, int) and value > 0 else None


class ForwardModule(nn.Module):
    """`LoadedModel.final_outputs` as a module, for `torch.func.functional_call`: the wrapped
    model's parameters are named `inner.<checkpoint name>`."""

    def __init__(self, loaded: LoadedModel):
        super().__init__()
        self.inner = loaded.model
        self._loaded = [loaded]  # a list, so nn.Module does not register it

    def forward(self, input_ids: torch.Tensor):
        return self._loaded[0].final_outputs(input_ids)


def resolve_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeltaPlanError("--device cuda: no CUDA device is available")
        return torch.device("cuda")
    raise DeltaPlanError(f"--device must be cpu or cuda, got {name!r}")


def load_model(directory: str, device: str = "cpu", dtype: str = "float32", tokenizer: bool = True) -> LoadedModel:
    """Loads the model in `directory` (local files only) in `dtype` on `device`, with eager
    attention (the one implementation with forward-mode derivatives, used by `score`)."""
    spec = inspect_model(directory)
    checkpoint = Checkpoint.open(directory)
    if dtype not in DTYPES:
        raise DeltaPlanError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    torch_device = resolve_device(device)
    transformers = _transformers()
    cls = getattr(transformers, spec.class_name)
    try:
        model = cls.from_pretrained(directory, dtype=DTYPES[dtype], attn_implementation="eager", local_files_only=True)
    except Exception as e:
        raise DeltaPlanError(f"{directory}: {spec.class_name} could not be loaded ({type(e).__name__}: {e})") from None
    model.eval()
    model.requires_grad_(False)
    check_names(model, checkpoint, spec)
    model.to(torch_device)
    tok = load_tokenizer(directory) if tokenizer else None
    loaded = LoadedModel(spec, model, checkpoint, torch_device, DTYPES[dtype], tok)
    if spec.kind == CAUSAL:
        _check_head(loaded)
    return loaded


def load_tokenizer(directory: str):
    transformers = _transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as e:
        raise DeltaPlanError(f"{directory}: no usable tokenizer ({type(e).__name__}: {e})") from None


def check_names(model: nn.Module, checkpoint: Checkpoint, spec: ModelSpec) -> None:
    """Module names must equal the checkpoint's weight names: every checkpoint tensor is a
    parameter or buffer of the model under the same name and shape, and every parameter of the
    model comes from the checkpoint (tied copies excepted; a BERT pooler, which does not reach
    the last hidden state, may be absent)."""
    state = model.state_dict()
    buffers = {n for n, _ in model.named_buffers()}
    ignorable = [re.compile(p) for p in (getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])]
    where = f"{spec.directory} ({spec.class_name})"
    unexpected = [n for n in checkpoint.tensors if n not in state and n not in buffers and not any(p.search(n) for p in ignorable)]
    if unexpected:
        shown = ", ".join(unexpected[:4]) + (f" and {len(unexpected) - 4} more" if len(unexpected) > 4 else "")
        raise DeltaPlanError(f"{where}: checkpoint tensors {shown} have no module of that name; the checkpoint's names do "
                             f"not match the class's module names (e.g. {next(iter(state), '?')})")
    for name, record in checkpoint.tensors.items():
        if name in state and tuple(state[name].shape) != record.shape:
            raise DeltaPlanError(f"{where}: checkpoint tensor {name} has shape {list(record.shape)}, "
                                 f"the model's has {list(state[name].shape)}")
    missing = [n for n, _ in model.named_parameters() if n not in checkpoint.tensors
               and not (spec.kind == ENCODER and (n.startswith("pooler.") or ".pooler." in n))]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise DeltaPlanError(f"{where}: parameters {shown} are not in the checkpoint; the checkpoint's names do not match "
                             "the class's module names")


def _check_head(loaded: LoadedModel) -> None:
    """The logits must be `head(last hidden state)`, as `final_outputs` computes them (no logit
    scaling or soft-capping)."""
    vocab = int(getattr(loaded.config, "vocab_size", 0) or 0)
    n = min(8, vocab) if vocab else 8
    ids = torch.arange(n, device=loaded.device)[None]
    with torch.no_grad():
        expected = loaded.model(input_ids=ids, use_cache=False).logits
        _, logits = loaded.final_outputs(ids)
    scale = float(expected.abs().max()) or 1.0
    tol = 1e-3 if loaded.dtype in (torch.float32, torch.float64) else 5e-2
    if logits.shape != expected.shape or float((logits - expected).abs().max()) > tol * scale:
        raise DeltaPlanError(f"{loaded.directory}: {loaded.spec.class_name}'s logits are not its output head applied to "
                             "the last hidden state (logit scaling or soft-capping?); this model type is not supported")
