"""Argument and tensor checks shared by every module.

Each check raises ``ValueError`` (bad value or shape) or ``TypeError`` (bad type,
dtype or device) with a message that names what was expected and what was received.
PyTorch is imported only to check a tensor, so the NumPy reference shares the checks
of plain arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_divisible(name: str, value: int, divisor_name: str, divisor: int) -> None:
    """Raise unless ``value`` is a multiple of ``divisor``, suggesting the nearest one."""
    if value % divisor:
        nearest = divisor * max(1, round(value / divisor))
        raise ValueError(
            f"{name} ({value}) must be divisible by {divisor_name} ({divisor}); "
            f"try {name}={nearest}"
        )


def check_choice(name: str, value: object, choices: Sequence[object]) -> object:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def _check_tensor(name: str, value: object, like: Tensor) -> Tensor:
    """Check that ``value`` is a floating tensor with ``like``'s dtype and device."""
    import torch  # here, so that the argument checks above work without PyTorch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype != like.dtype:
        raise TypeError(
            f"{name} has dtype {value.dtype} but the module's parameters are {like.dtype}; "
            f"convert one of them (e.g. module.to({like.dtype}) or {name}.to(...))"
        )
    if value.device != like.device:
        raise TypeError(
            f"{name} is on device {value.device} but the module's parameters are on "
            f"{like.device}; move one of them with .to(device)"
        )
    return value


def check_sequence(
    x: object, input_size: int, batch_first: bool, like: Tensor
) -> tuple[Tensor, int, int]:
    """Check a sequence input and return it batch-first, with its batch size and length.

    x: (B, T, input_size) if ``batch_first`` else (T, B, input_size). Never transposes
    silently: the layout is the one ``batch_first`` declares.
    """
    x = _check_tensor("input", x, like)
    layout = "(batch, time, features)" if batch_first else "(time, batch, features)"
    if x.dim() != 3:
        raise ValueError(
            f"input must have 3 dimensions {layout}, got {x.dim()} with shape {tuple(x.shape)}"
        )
    if x.shape[-1] != input_size:
        raise ValueError(
            f"input must have {input_size} features in its last dimension {layout}, "
            f"got shape {tuple(x.shape)}"
        )
    if not batch_first:
        x = x.transpose(0, 1)
    batch_size, steps = x.shape[0], x.shape[1]
    if batch_size == 0 or steps == 0:
        raise ValueError(f"input must have a non-empty batch and time axis, got {tuple(x.shape)}")
    return x, batch_size, steps


def check_step_input(x: object, input_size: int, like: Tensor) -> Tensor:
    """Check a one-step input of shape (B, input_size)."""
    x = _check_tensor("input", x, like)
    if x.dim() != 2 or x.shape[-1] != input_size:
        raise ValueError(
            f"a one-step input must have shape (batch, {input_size}), got {tuple(x.shape)}"
        )
    return x


def check_state(name: str, value: object, expected: Sequence[int], like: Tensor) -> Tensor:
    """Check that a state tensor has exactly the ``expected`` shape, dtype and device."""
    value = _check_tensor(name, value, like)
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(value.shape)}")
    return value
