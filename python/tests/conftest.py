"""Tiny seeded models, tokenizers and text, built offline in a temporary directory.

- a Llama-style causal LM with grouped-query attention (hidden 64, 4 heads, 2 KV heads,
  2 layers, vocabulary 100) and a WordLevel tokenizer that prepends <s>;
- a BERT-style encoder (hidden 64, 4 heads, 2 layers) with a BertTokenizer over a vocab.txt;
- for each, a fine-tuned twin: every selected linear gets a low-rank + noise delta.

transformers computes Llama's RMSNorm and eager attention softmax in float32 even for a float64
model; the tests patch both to keep the input's precision (identical for float32 and below), so
that float64 checks hold to float64 precision.
"""

from __future__ import annotations

import json
import os
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("CI", "1")  # no progress bars in tests

import numpy as np
import pytest
import torch
import torch.nn as nn

warnings.filterwarnings("ignore")
torch.set_num_threads(1)

import transformers  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402

transformers.logging.set_verbosity_error()
try:
    transformers.logging.disable_progress_bar()
except AttributeError:
    pass


def _rms_norm_forward(self, hidden_states):
    dtype = torch.promote_types(hidden_states.dtype, torch.float32)
    x = hidden_states.to(dtype)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
    return self.weight * x.to(hidden_states.dtype)


def _eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key_states = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value_states = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    dtype = torch.promote_types(query.dtype, torch.float32)
    weights = nn.functional.softmax(weights, dim=-1, dtype=dtype).to(query.dtype)
    out = torch.matmul(weights, value_states).transpose(1, 2).contiguous()
    return out, weights


modeling_llama.LlamaRMSNorm.forward = _rms_norm_forward
modeling_llama.eager_attention_forward = _eager_attention_forward

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa"]
WORDS = sorted({a + b for a in SYLLABLES for b in SYLLABLES})[:97]
LLAMA_SPECIALS = ["<unk>", "<s>", "</s>"]
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_text(path: str, sentences: int = 400, seed: int = 7) -> str:
    rng = np.random.default_rng(seed)
    paragraphs = []
    for _ in range(sentences // 8):
        lines = [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 12)))) + " ." for _ in range(8)]
        paragraphs.append(" ".join(lines).replace(" .", ""))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(paragraphs) + "\n")
    return path


def llama_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(LLAMA_SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def bert_tokenizer(directory: str):
    from transformers import BertTokenizer

    path = os.path.join(directory, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(BERT_SPECIALS + WORDS) + "\n")
    return BertTokenizer(path)


def llama_config():
    return transformers.LlamaConfig(
        vocab_size=len(LLAMA_SPECIALS) + len(WORDS), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=None, architectures=["LlamaForCausalLM"])


def bert_config():
    return transformers.BertConfig(
        vocab_size=len(BERT_SPECIALS) + len(WORDS), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        architectures=["BertModel"])


def seeded_model(config, cls, seed: int):
    torch.manual_seed(seed)
    model = cls(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15 if "embed" not in name else 0.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.05)
            else:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    return model.eval()


def fine_tune(model, seed: int, rank: int = 2, scale: float = 0.05, noise: float = 0.01):
    """A twin whose selected linears get ΔW = scale·A Bᵀ + noise·N."""
    import copy

    from deltaplan_model.selection import Selection

    twin = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    names = set(Selection().select(twin))
    with torch.no_grad():
        for name, module in twin.named_modules():
            if name in names:
                w = module.weight
                a = torch.randn(w.shape[0], rank, generator=gen)
                b = torch.randn(w.shape[1], rank, generator=gen)
                w.add_(scale * (a @ b.T) / rank ** 0.5 + noise * torch.randn(w.shape, generator=gen))
    return twin


def save(model, tokenizer, directory: str, **kwargs) -> str:
    model.save_pretrained(directory, **kwargs)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Paths of the tiny models: {llama,bert}_{base,ft} directories and a text file."""
    root = tmp_path_factory.mktemp("models")
    out = {"text": write_text(str(root / "calib.txt")),
           "heldout": write_text(str(root / "heldout.txt"), seed=11)}
    llama = seeded_model(llama_config(), transformers.LlamaForCausalLM, 1)
    tok = llama_tokenizer()
    out["llama_base"] = save(llama, tok, str(root / "llama_base"))
    out["llama_ft"] = save(fine_tune(llama, 2), tok, str(root / "llama_ft"))
    bert = seeded_model(bert_config(), transformers.BertModel, 3)
    bert_dir = root / "bert_base"
    bert_dir.mkdir()
    btok = bert_tokenizer(str(bert_dir))
    out["bert_base"] = save(bert, btok, str(bert_dir))
    out["bert_ft"] = save(fine_tune(bert, 4), btok, str(root / "bert_ft"))
    with open(os.path.join(out["text"] + ".jsonl"), "w", encoding="utf-8") as f:
        for para in open(out["text"], encoding="utf-8").read().split("\n\n"):
            f.write(json.dumps({"text": para.strip(), "id": 1}) + "\n")
    out["jsonl"] = out["text"] + ".jsonl"
    return out
