"""RenderRequest and prompt templates refuse bad input before any model work, with specific messages."""

from __future__ import annotations

import pytest
from PIL import Image

from cloud.messages import RenderJob
from gpu_agent.engine.render_prompt import fill_prompt
from gpu_agent.engine.render_types import BadRenderRequest, LoraRef, RenderRequest


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 100}, "width must be a multiple of 8, got 100"),
        ({"height": 516}, "height must be a multiple of 8, got 516"),
        ({"width": 4096}, "width must be between 64 and 2048"),
        ({"n": 0}, "count must be between 1 and 8, got 0"),
        ({"n": 9}, "count must be between 1 and 8"),
        ({"seed": -1}, "seed must be between"),
        ({"steps": 0}, "steps must be between 1 and 150"),
        ({"guidance": 31}, "guidance must be between 0 and 30"),
        ({"prompt": "   "}, "the prompt is empty"),
        ({"prompt": "x" * 1001}, "limited to 1000 characters"),
        ({"mode": "group"}, "mode 'group' is not supported"),
        ({"strength": 0.5}, "strength applies only to variation and upscale"),
        ({"mode": "variation"}, "variation needs the source image"),
        (
            {"mode": "upscale", "source": Image.new("RGB", (1100, 1100))},
            "upscale size: width must be between",
        ),
        ({"mode": "variation", "source": Image.new("RGB", (32, 64))}, "smaller than 64 px"),
        ({"mode": "variation", "source": Image.new("RGB", (64, 64)), "strength": 0}, "strength must be in"),
        ({"source": Image.new("RGB", (64, 64))}, "txt2img render takes no source"),
    ],
)
def test_bad_requests_are_refused(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"prompt": "photo of {subject}"}
    with pytest.raises(BadRenderRequest, match=message):
        RenderRequest(**{**base, **kwargs})  # type: ignore[arg-type]


def test_output_sizes_per_mode() -> None:
    source = Image.new("RGB", (100, 76))
    assert RenderRequest("p", width=64, height=128).output_size == (64, 128)
    # sources that are not multiples of 8 are rounded down
    assert RenderRequest("p", mode="variation", source=source).output_size == (96, 72)
    assert RenderRequest("p", mode="upscale", source=source).output_size == (200, 152)
    assert RenderRequest("p", mode="upscale", source=source).effective_strength == 0.3
    assert RenderRequest("p", mode="variation", source=source, strength=0.8).effective_strength == 0.8


def test_prompt_template_is_filled_by_substitution_only() -> None:
    assert fill_prompt("photo of {subject} in Rome", "sks  man") == "photo of sks man in Rome"
    # no placeholder: the subject leads, so the member's LoRA token is always in the prompt
    assert fill_prompt("at the beach", "sks man") == "photo of sks man, at the beach"
    assert fill_prompt("photo of {subject}", "") == "photo of a person"
    # hostile format fields stay literal text: nothing reaches str.format
    assert fill_prompt("{subject.__class__} {0} {subject}", "sks") == "{subject.__class__} {0} sks"


def test_lora_ref_refuses_odd_ids() -> None:
    with pytest.raises(BadRenderRequest, match="not a valid id"):
        LoraRef("../../etc", "x.safetensors")
    with pytest.raises(BadRenderRequest, match="scale"):
        LoraRef("m1", "x.safetensors", scale=5)
    assert LoraRef("m-1", "x.safetensors").adapter_name == "m_m-1"


def test_from_job_carries_the_message_fields() -> None:
    job = RenderJob(
        job_id="j1",
        order_id="o1",
        user_id="u1",
        base_model="tiny-sd",
        prompt="photo of {subject}",
        subject="sks man",
        seed=7,
        count=3,
        width=64,
        height=96,
        steps=4,
        guidance=5.0,
    )
    request = RenderRequest.from_job(job)
    assert (request.seed, request.n, request.width, request.height, request.steps) == (7, 3, 64, 96, 4)
    assert request.subject == "sks man" and request.strength is None
    upscale = job.model_copy(update={"mode": "upscale", "strength": 0.25})
    assert RenderRequest.from_job(upscale, Image.new("RGB", (64, 64))).effective_strength == 0.25
    with pytest.raises(BadRenderRequest, match="'edit' is not supported"):
        RenderRequest.from_job(job.model_copy(update={"mode": "edit"}))
