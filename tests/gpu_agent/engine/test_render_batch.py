"""Mixed-member batches (engine/batch.py) on the tiny random SD model: each row sees only its own member's LoRA.

Tolerance, stated once: a picture of a mixed batch equals the same job rendered alone (Renderer.render) to
within ``TOLERANCE`` levels (of 255) on every channel of every pixel. The only difference is float rounding
of kernels that see a bigger batch (on this CPU: at most 1 level, on a handful of pixels); a batch of one is
the very same arithmetic as a render alone and must match exactly.

The LoRAs are made as tests/gpu_agent/engine/test_render.py makes them (random A and B, so each one visibly
changes every picture it touches): A also adapts the text encoder, B touches fewer layers at another rank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_render import make_lora

from gpu_agent.engine.batch import BatchMember, batch_key, render_batch
from gpu_agent.engine.render import Renderer
from gpu_agent.engine.render_hooks import PromptRefused
from gpu_agent.engine.render_types import LoraLoadError, LoraRef, RenderRequest

TOLERANCE = 2
"""Max per-channel difference (0-255) between a mixed batch's picture and the job rendered alone."""


def request(
    seed: int, n: int = 1, prompt: str = "photo of {subject}, studio light", **kw: Any
) -> RenderRequest:
    fields: dict[str, Any] = {
        "width": 64,
        "height": 64,
        "steps": 2,
        "guidance": 6.0,
        "negative_prompt": "blurry",
    }
    return RenderRequest(prompt, subject="sks man", seed=seed, n=n, **(fields | kw))


def diff(a: Any, b: Any) -> int:
    return int(np.abs(np.asarray(a.image, dtype=np.int16) - np.asarray(b.image, dtype=np.int16)).max())


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("tiny-sd", device="cpu", max_resident=4, prompt_check=refuse_kremlin)


def refuse_kremlin(prompt: str) -> None:
    if "kremlin" in prompt:
        raise PromptRefused("not that place")


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoraRef]:
    root = tmp_path_factory.mktemp("batch-loras")
    specs: dict[str, dict[str, Any]] = {
        "a": {"seed": 1, "text_encoder": True},
        "b": {"seed": 2, "rank": 2, "targets": ("to_q", "to_v")},
        "c": {"seed": 3},
        "d": {"seed": 4, "text_encoder": True},
    }
    out = {}
    for name, spec in specs.items():
        (root / name).mkdir()
        out[name] = LoraRef(f"model-{name}", make_lora("tiny-sd", root / name, **spec))
    return out


def assert_each_as_alone(renderer: Renderer, members: list[BatchMember], results: list[Any]) -> None:
    for member, result in zip(members, results, strict=True):
        assert not isinstance(result, Exception), result
        alone = renderer.render(member.request, member.lora)
        assert [r.seed for r in result] == [a.seed for a in alone]
        assert [r.params.lora for r in result] == [a.params.lora for a in alone]
        worst = max(diff(r, a) for r, a in zip(result, alone, strict=True))
        assert worst <= TOLERANCE, (member.lora, worst)


def test_a_batch_of_one_is_the_render_alone_exactly(renderer: Renderer, loras: dict[str, LoraRef]) -> None:
    for lora in (loras["a"], None):
        member = BatchMember(request(11, n=2), lora)
        (result,) = render_batch(renderer, [member])
        alone = renderer.render(member.request, lora)
        assert [r.image.tobytes() for r in result] == [a.image.tobytes() for a in alone]  # type: ignore[union-attr]


def test_each_picture_of_a_mixed_batch_equals_its_job_alone(
    renderer: Renderer, loras: dict[str, LoraRef]
) -> None:
    # Four members, four different LoRAs or none, other prompts, seeds, negative prompts and picture counts
    # (one text-encoder row per picture).
    members = [
        BatchMember(request(11, n=2), loras["a"]),
        BatchMember(request(5, prompt="portrait of {subject} in rome"), loras["b"]),
        BatchMember(request(7), None),
        BatchMember(request(9, negative_prompt="cartoon"), loras["c"]),
    ]
    assert_each_as_alone(renderer, members, render_batch(renderer, members))


def test_no_member_lora_touches_another_row(renderer: Renderer, loras: dict[str, LoraRef]) -> None:
    # One picture each: each member's prompt is one text-encoder row.
    mine = BatchMember(request(11), loras["a"])
    plain = BatchMember(request(7), None)
    with_b = render_batch(renderer, [mine, BatchMember(request(5), loras["b"]), plain])
    with_d = render_batch(renderer, [mine, BatchMember(request(5), loras["d"]), plain])
    # The batch-mate's picture did change with its LoRA ...
    assert diff(with_b[1][0], with_d[1][0]) > 20  # type: ignore[index]
    # ... and the other rows did not move by a single level: neither A's nor the bare base row.
    for row in (0, 2):
        assert with_b[row][0].image.tobytes() == with_d[row][0].image.tobytes()  # type: ignore[index]
    assert_each_as_alone(renderer, [mine], with_b[:1])
    # Per-row seeds: A's pictures in another batch, at another position, are the same pixels.
    again = render_batch(
        renderer, [BatchMember(request(8, n=2), None), BatchMember(request(4), loras["c"]), mine]
    )
    assert again[2][0].image.tobytes() == with_b[0][0].image.tobytes()  # type: ignore[index]


def test_same_model_at_two_scales_and_a_member_own_failures(
    renderer: Renderer, loras: dict[str, LoraRef], tmp_path: Path
) -> None:
    corrupt = tmp_path / "broken.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    half = LoraRef("model-a", loras["a"].path, scale=0.5)
    cancelled: list[int] = []

    def cancel(step: int, total: int) -> None:
        cancelled.append(step)
        raise RuntimeError("cancelled by the member")

    members = [
        BatchMember(request(11), loras["a"]),
        BatchMember(request(12), LoraRef("model-bad", corrupt)),
        BatchMember(request(13), half),  # same model, another scale: its own denoising batch
        BatchMember(request(14), loras["b"], progress=cancel),
    ]
    results = render_batch(renderer, members)
    assert isinstance(results[1], LoraLoadError)
    assert isinstance(results[3], RuntimeError) and cancelled == [1]
    assert_each_as_alone(renderer, [members[0], members[2]], [results[0], results[2]])
    assert diff(results[0][0], results[2][0]) > 5  # type: ignore[index]  # the scale did reach its row


def test_a_refused_prompt_fails_that_member_only(renderer: Renderer, loras: dict[str, LoraRef]) -> None:
    members = [
        BatchMember(request(1, prompt="{subject} at the kremlin"), loras["a"]),
        BatchMember(request(2), None),
    ]
    refused, fine = render_batch(renderer, members)
    assert isinstance(refused, PromptRefused)
    assert isinstance(fine, list) and fine[0].seed == 2


def test_the_batch_key_is_the_one_compatibility_rule(renderer: Renderer) -> None:
    base = request(1)
    assert batch_key(base, "tiny-sd") == batch_key(request(9, n=3, prompt="x {subject}"), "tiny-sd")
    for other in (
        request(1, steps=4),
        request(1, width=72),
        request(1, guidance=5.0),
        request(1, negative_prompt=""),
    ):
        assert batch_key(other, "tiny-sd") != batch_key(base, "tiny-sd")
    assert batch_key(base, "tiny-sdxl") != batch_key(base, "tiny-sd")
    with pytest.raises(ValueError, match="batch_key"):
        render_batch(renderer, [BatchMember(base), BatchMember(request(1, steps=4))])
