"""engine/row_lora on a small real peft-injected model: each row gets exactly its own adapter's update.

Linear LoRA layers take the batched-matmul path (per-row weight stacks), the convolution's LoRA layer peft's own
``adapter_names`` path; both must give every row what the row's adapter alone gives it (float rounding only),
a row without an adapter the bare base, and leave the layers as they were.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model

from gpu_agent.engine.row_lora import BASE, RowUpdate, _rows, lora_layers


class Small(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.to_q = torch.nn.Linear(6, 8)
        self.to_v = torch.nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).flatten(2).transpose(1, 2)  # [rows, tokens, 6]
        return self.to_v(torch.relu(self.to_q(h)))


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    net = Small().eval()
    # Two adapters of other ranks and targets (b has no LoRA on to_v), random A and B so each one shows.
    net = inject_adapter_in_model(
        LoraConfig(r=4, lora_alpha=8, target_modules=["conv", "to_q", "to_v"], init_lora_weights=False),
        net,
        adapter_name="a",
    )
    net = inject_adapter_in_model(
        LoraConfig(r=2, lora_alpha=2, target_modules=["conv", "to_q"], init_lora_weights=False),
        net,
        adapter_name="b",
    )
    return net


def only(model: torch.nn.Module, adapter: str | None) -> None:
    for layer in lora_layers(model):
        if adapter is None:
            layer.enable_adapters(False)
        else:
            layer.enable_adapters(True)
            layer.set_adapter([adapter] if adapter in layer.lora_A else [])


def alone(model: torch.nn.Module, x: torch.Tensor, names: list[str]) -> torch.Tensor:
    rows = []
    for row, name in zip(x, names * (len(x) // len(names)), strict=True):
        only(model, None if name == BASE else name)
        rows.append(model(row[None]))
    return torch.cat(rows)


def both_active(model: torch.nn.Module) -> None:
    for layer in lora_layers(model):
        layer.enable_adapters(True)
        layer.set_adapter([n for n in ("a", "b") if n in layer.lora_A])


def test_every_row_gets_its_own_adapter_only(model: torch.nn.Module) -> None:
    names = ["a", "b", BASE, "a"]
    torch.manual_seed(1)
    x = torch.randn(8, 3, 4, 4)  # two copies of the row layout, as classifier-free guidance stacks them
    with torch.inference_mode():
        expected = alone(model, x, names)
        both_active(model)
        with _rows([(model, names)]):
            got = model(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        # Each adapter visibly changes a row, so a row that took a batch-mate's update would fail above.
        for name in ("a", "b"):
            assert (alone(model, x[2:3], [name]) - expected[2]).abs().max() > 1e-2


def test_linear_layers_batch_their_rows_and_the_conv_keeps_peft_path(model: torch.nn.Module) -> None:
    names = ["a", "b", BASE]
    both_active(model)
    update = RowUpdate.of(model.to_q, names)
    assert update is not None and update.adds_anything
    assert RowUpdate.of(model.conv, names) is None  # a convolution: peft's adapter_names path
    # b has no LoRA on to_v: its rows and the base row get zeros there.
    with torch.inference_mode():
        to_v = RowUpdate.of(model.to_v, names)
        assert to_v is not None
        out = torch.zeros(3, 2, 5)
        added = to_v(model.to_v, (torch.ones(3, 2, 8),), {}, out)
    assert added[1:].abs().max() == 0 and added[0].abs().max() > 0


def test_layers_are_as_before_afterwards_and_a_wrong_row_count_is_refused(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 4, 4)
    with torch.inference_mode():
        both_active(model)
        before = model(x)
        with _rows([(model, ["a", "b", BASE])]), pytest.raises(RuntimeError, match="not a multiple"):
            model(x)
        after = model(x)
    assert torch.equal(before, after)
    layers: list[Any] = lora_layers(model)
    assert all(not layer.disable_adapters for layer in layers)
    assert all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in layers)
