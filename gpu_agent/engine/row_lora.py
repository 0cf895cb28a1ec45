"""Per-row LoRA inside one forward pass: each row of a mixed-member batch gets only its own member's update.

peft's LoRA layers can do this when called with ``adapter_names`` (one adapter name per input row,
``"__base__"`` for none): ``LoraLayer._mixed_batch_forward``. But it does so at every call of every layer from
scratch: Python index lists built from the names, each adapter's rows gathered (a copy), two small matmuls,
a scale and a scatter back per adapter. With four members that is about twenty small operations per layer call
where a render alone pays five, and on a CPU at the tiny model's size they cost more than the matmuls (the
profile in docs/benchmarks/batch.md).

Here, for the plain linear LoRA layers a member's LoRA consists of (the trainer's attention projections of the
UNet and the text encoders), the batch's row layout is turned into weights once per batch instead: per row the
member's ``A^T`` and ``B^T * scaling`` stacked (zeros for rows without a LoRA or whose LoRA does not adapt this
layer; smaller ranks zero-padded), and the layer's update for all rows is two batched matmuls,
``base(x) + (x @ A_row) @ B_row`` (``torch.bmm`` / ``torch.baddbmm``): the way S-LoRA and Punica batch many
LoRAs for language models. The layer's own adapters are switched off meanwhile, so its forward is the base
layer alone, and a forward hook adds the update. Zero rows add exactly nothing, so a bare-base row is the base.

Any other LoRA layer (convolutions, DoRA and other peft variants, LoRA with a bias, ``fan_in_fan_out``) keeps
peft's own ``adapter_names`` path, supplied by a forward pre-hook, as peft's ``PeftModel`` does for language
models.

Diffusers' UNet and transformers' CLIP do not pass a per-row argument down, so the caller states the rows:
the text encoder(s) see ``text_rows`` (or copies of it stacked, e.g. prompts and negative prompts) and the UNet
``unet_rows`` (repeated when classifier-free guidance stacks [unconditional, conditional] halves).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

BASE = "__base__"
"""peft's name for "no adapter on this row"."""

_TEXT_ENCODERS = ("text_encoder", "text_encoder_2")


def lora_layers(module: torch.nn.Module | None) -> list[Any]:
    """Every peft LoRA layer inside ``module``."""
    from peft.tuners.lora import LoraLayer

    if module is None:
        return []
    return [m for m in module.modules() if isinstance(m, LoraLayer)]


@contextmanager
def row_adapters(pipe: Any, text_rows: list[str], unet_rows: list[str]) -> Iterator[None]:
    """While inside: each LoRA layer of the text encoder(s) adds to row i the update of adapter ``text_rows[i]``
    and each of the UNet that of ``unet_rows[i]`` (rows repeat when the pipeline stacks copies of the batch).
    The adapters named must be active (``AdapterSlots.activate_slots``: it sets each one's scale)."""
    parts = [(getattr(pipe, "unet", None), unet_rows)]
    parts += [(getattr(pipe, name, None), text_rows) for name in _TEXT_ENCODERS]
    with _rows(parts):
        yield


@contextmanager
def _rows(parts: list[tuple[torch.nn.Module | None, list[str]]]) -> Iterator[None]:
    handles: list[Any] = []
    switched_off: list[Any] = []
    try:
        for component, names in parts:
            fallback: Callable[..., Any] | None = None
            for layer in lora_layers(component):
                if layer.disable_adapters:
                    continue  # bypassed: the base layer alone, for every row
                update = RowUpdate.of(layer, names)
                if update is None:
                    fallback = fallback or _names_hook(names)
                    handles.append(layer.register_forward_pre_hook(fallback, with_kwargs=True))
                    continue
                layer.enable_adapters(False)
                switched_off.append(layer)
                if update.adds_anything:
                    handles.append(layer.register_forward_hook(update, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for layer in switched_off:
            layer.enable_adapters(True)


class RowUpdate:
    """One linear LoRA layer's per-row update for one batch's row layout (a forward hook)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, adds_anything: bool) -> None:
        self._a = a  # [rows, in, rank]: each row's A^T
        self._b = b  # [rows, rank, out]: each row's (B * scaling)^T
        self._by_rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {len(a): (a, b)}
        self.adds_anything = adds_anything

    @classmethod
    def of(cls, layer: Any, names: list[str]) -> RowUpdate | None:
        """The update for rows ``names``; None when the layer needs peft's own mixed-batch path."""
        from peft.tuners.lora import Linear

        used = [n for n in dict.fromkeys(names) if n in layer.lora_A]
        if not isinstance(layer, Linear) or layer.fan_in_fan_out or layer.merged:
            return None
        if any(
            n in layer.lora_variant or layer.lora_bias.get(n) or _drops(layer.lora_dropout[n]) for n in used
        ):
            return None
        weight = layer.get_base_layer().weight
        rank = max((layer.r[n] for n in used), default=1)
        a = weight.new_zeros(len(names), layer.in_features, rank)
        b = weight.new_zeros(len(names), rank, layer.out_features)
        if used:
            a = a.to(layer.lora_A[used[0]].weight.dtype)
            b = b.to(a.dtype)
        with torch.no_grad():
            for row, name in enumerate(names):
                if name not in used:
                    continue
                r = layer.r[name]
                a[row, :, :r] = layer.lora_A[name].weight.t()
                b[row, :r, :] = layer.lora_B[name].weight.t() * layer.scaling[name]
        return cls(a, b, adds_anything=bool(used))

    def __call__(self, _layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: torch.Tensor) -> Any:
        x = args[0] if args else kwargs["x"]
        a, b = self._for(len(x))
        hidden = torch.bmm(x.reshape(len(a), -1, x.shape[-1]).to(a.dtype), a)
        rows = out.reshape(len(a), -1, out.shape[-1])
        if rows.dtype == b.dtype:
            return torch.baddbmm(rows, hidden, b).view(out.shape)
        return (rows + torch.bmm(hidden, b).to(rows.dtype)).view(out.shape)

    def _for(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        stacks = self._by_rows.get(rows)
        if stacks is None:
            if rows % len(self._a):
                raise RuntimeError(
                    f"a LoRA layer saw {rows} rows, not a multiple of the batch's {len(self._a)}"
                )
            copies = rows // len(self._a)
            stacks = self._by_rows[rows] = (self._a.repeat(copies, 1, 1), self._b.repeat(copies, 1, 1))
        return stacks


def _drops(dropout: torch.nn.Module) -> bool:
    """Whether a LoRA's dropout changes its input (peft uses Identity for none; rendering never trains)."""
    return isinstance(dropout, torch.nn.Dropout) and dropout.training and dropout.p > 0


def _names_hook(names: list[str]) -> Callable[..., tuple[tuple[Any, ...], dict[str, Any]]]:
    """A forward pre-hook giving a LoRA layer ``adapter_names`` (peft's own mixed-batch path), repeated to the
    rows it sees."""
    repeated: dict[int, list[str]] = {}

    def hook(
        _layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        x = args[0] if args else next(iter(kwargs.values()))
        rows = len(x)
        if rows not in repeated:
            if rows % len(names):
                raise RuntimeError(
                    f"a LoRA layer saw {rows} rows, not a multiple of the batch's {len(names)}"
                )
            repeated[rows] = names * (rows // len(names))
        kwargs["adapter_names"] = repeated[rows]
        return args, kwargs

    return hook
