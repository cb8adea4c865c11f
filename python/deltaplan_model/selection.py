"""Which linear modules are measured: the same rule as the Swift `deltaplan analyze`.

A module is selected when its weight name `<module>.weight` is 2-D, matches one of the `include`
regular expressions (searched, unanchored) and none of the `exclude` ones. Python's `re` and
ICU agree on the default patterns.
"""

from __future__ import annotations

import re

import torch.nn as nn

from .errors import DeltaPlanError

DEFAULT_INCLUDE = (
    r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$",
    r"\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)\.weight$",
)


class Selection:
    def __init__(self, include: list[str] | None = None, exclude: list[str] | None = None):
        self.include_patterns = list(include) if include else list(DEFAULT_INCLUDE)
        self.exclude_patterns = list(exclude or [])
        self._include = [self._compile(p, "--include") for p in self.include_patterns]
        self._exclude = [self._compile(p, "--exclude") for p in self.exclude_patterns]

    @staticmethod
    def _compile(pattern: str, option: str) -> re.Pattern[str]:
        try:
            return re.compile(pattern)
        except re.error as e:
            raise DeltaPlanError(f"{option} '{pattern}' is not a valid regular expression ({e})") from None

    def matches(self, weight_name: str) -> bool:
        return any(p.search(weight_name) for p in self._include) and not any(p.search(weight_name) for p in self._exclude)

    def select(self, model: nn.Module) -> list[str]:
        """Names of the selected modules of `model`, in module order. A parameter named
        `<module>.weight` that matches but is not a 2-D `nn.Linear` weight is an error when it is
        2-D (it would be measured wrongly), and is skipped otherwise (norms, biases...)."""
        selected = []
        for name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            if not isinstance(weight, nn.Parameter) or weight.dim() != 2:
                continue
            weight_name = f"{name}.weight"
            if not self.matches(weight_name):
                continue
            if not isinstance(module, nn.Linear):
                raise DeltaPlanError(
                    f"{weight_name} matches the selection but belongs to a {type(module).__name__}, not a linear layer; "
                    "exclude it with --exclude")
            selected.append(name)
        return selected
