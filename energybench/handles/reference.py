"""What a model reference names, told without torch: a RobustBench zoo name or a model file that
must exist. Checked first, so a mistyped path is refused before anything slow starts."""

from __future__ import annotations

import os
from pathlib import Path

from energybench.core.errors import UserError

PREFIX = "robustbench:"
MODEL_HELP = "an energybench checkpoint (.pt), a torch.export program (.pt2) or robustbench:NAME"


def is_zoo_name(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def check_model_reference(spec) -> None:
    """A path (str or os.PathLike, not a zoo name) must be an existing file; one-line UserError
    otherwise. Anything else (a module, a loaded model, a zoo name) is checked when opened."""
    if is_zoo_name(spec) or not isinstance(spec, (str, os.PathLike)):
        return
    path = Path(spec)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a model file; give {MODEL_HELP} (a run's checkpoint is "
                        f"its last.pt or best.pt)")
    if not path.is_file():
        raise UserError(f"{'model file' if path.suffix == '.pt2' else 'checkpoint'} not found: {path}")
