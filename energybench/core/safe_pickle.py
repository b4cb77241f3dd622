"""Files that torch reads with pickle (weights, sample inputs), read without running code.

`torch.load(weights_only=True)` rebuilds only tensors and plain containers; anything else in the
pickle (a `__reduce__` that calls `os.system`) is refused before it runs. Libraries that call
`torch.load(weights_only=False)` themselves (torch.export for pickled payloads, torch-fidelity for
its Inception weights) run inside `no_code_from_pickles()`, which forces the safe mode on them.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from pathlib import Path
from unittest import mock

import torch

from energybench.core.errors import UserError


def _no_unpickling(*args, **kwargs):
    raise pickle.UnpicklingError("energybench does not unpickle Python objects from model files")


@contextlib.contextmanager
def no_code_from_pickles():
    """Within this block torch.load runs with weights_only=True whatever its caller asks, and
    pickle.loads and TorchScript's object loader refuse."""
    safe_load = torch.load

    def weights_only_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return safe_load(*args, **kwargs)

    with mock.patch("torch.load", weights_only_load), mock.patch("pickle.loads", _no_unpickling), \
            mock.patch.object(torch._C, "_pickle_load_obj", _no_unpickling):
        yield


def read_plain(path: str | os.PathLike, what: str, advice: str) -> object:
    """`torch.load(path, weights_only=True)`: tensors and plain containers only. A pickle that
    needs any other class (a payload that would run code) is refused before it runs; any other
    failure (truncated, random bytes: torch's reader raises anything) is 'corrupt'. One-line
    UserErrors naming `what` the file is meant to be; `advice` says what to do instead."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise UserError(f"{what} {path} is empty (0 bytes); it was not written completely: give it again")
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save: a zip, or a legacy pickle
        shown = head.decode("ascii", "replace") if head.isascii() else head.hex()
        raise UserError(f"{path} is not a PyTorch file (it starts with {shown!r}, not a zip archive or a "
                        f"pickle); give the {what} file itself")
    try:
        with warnings.catch_warnings():
            # torch announces its scan of sparse weights; read_checkpoint refuses them in one line
            warnings.filterwarnings("ignore", message="Validating sparse tensor invariants")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():
            raise UserError(f"refusing {what} {path}: it holds pickled Python objects, not plain tensors "
                            f"(loading it could run code); {advice}") from None
        text = str(exc).split("WeightsUnpickler error:", 1)[-1]
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
        raise UserError(f"corrupt {what} {path} ({first[:160]})") from None
    except Exception as exc:  # noqa: BLE001  arbitrary bytes fail anywhere in torch's reader
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"corrupt or truncated {what} {path} ({type(exc).__name__}: {first[:160]})") from None


def load_tensor_dict(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """A file holding a dict of name -> tensor (a state dict), read by `read_plain`; anything else
    is a one-line UserError naming `what` the file was meant to be."""
    obj = read_plain(path, what, "give the plain state dict (torch.save(model.state_dict()))")
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise UserError(f"{what} {path} is not a state dict (a dict of names to tensors)")
    return obj
