"""DeltaPlan's Python companion: the PyTorch / Hugging Face side of DeltaPlan.

Commands (see `deltaplan-model --help`): `capture` writes a calibration file (format 2, see
Docs/calibration-format.md), `score` predicts each candidate's end-to-end error to first order,
`fidelity` measures it, `assemble` builds a model directory with replaced tensors.
"""

__version__ = "0.1.0"
