"""The Renderer on the tiny random models (CPU): LoRA swaps without leakage, seeds, modes, hooks, bad input.

The LoRAs here are made with peft directly on the tiny UNet (and text encoder), with random B matrices so each
one visibly changes the output, and saved with the pipeline's own save_lora_weights: the same file format the
trainer writes. The "fresh" references are plain diffusers calls, independent of the Renderer's code.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from PIL import Image

from gpu_agent.engine.models import load_base_pipeline
from gpu_agent.engine.pngmeta import read_png_params
from gpu_agent.engine.render import SAMPLER, Renderer, dpm_solver_pp
from gpu_agent.engine.render_hooks import ImageVerdict, PromptRefused
from gpu_agent.engine.render_types import BadRenderRequest, LoraLoadError, LoraRef, RenderRequest
from storage.settings import load_settings

STEPS = 3
REQUEST = RenderRequest(
    "photo of {subject}, studio light",
    subject="sks man",
    seed=11,
    n=2,
    width=64,
    height=64,
    steps=STEPS,
    guidance=6.0,
    negative_prompt="blurry",
)


def make_lora(
    base: str,
    folder: Path,
    seed: int,
    *,
    rank: int = 4,
    alpha: int | None = None,
    targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0"),
    text_encoder: bool = False,
    metadata: bool = False,
) -> Path:
    """A LoRA with random A and B matrices (init_lora_weights=False), so it changes every image it touches.

    ``metadata`` also writes each adapter's peft config into the file, as the trainer does (then ``alpha``,
    default the rank, scales the LoRA when it loads).
    """
    from diffusers.utils import convert_state_dict_to_diffusers

    # A fresh base pipeline: a Renderer's own UNet may already carry resident adapters.
    pipe = load_base_pipeline(base, device=torch.device("cpu"), dtype=None, cache_dir=None)
    torch.manual_seed(seed)
    lora_alpha = alpha or rank
    config = LoraConfig(r=rank, lora_alpha=lora_alpha, target_modules=list(targets), init_lora_weights=False)
    unet = inject_adapter_in_model(config, pipe.unet)
    layers: dict[str, Any] = {
        "unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    }
    if metadata:
        layers["unet_lora_adapter_metadata"] = config.to_dict()
    if text_encoder:
        te_config = LoraConfig(
            r=rank, lora_alpha=lora_alpha, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        encoder = inject_adapter_in_model(te_config, pipe.text_encoder)
        layers["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(encoder)
        )
        if metadata:
            layers["text_encoder_lora_adapter_metadata"] = te_config.to_dict()
    type(pipe).save_lora_weights(str(folder), weight_name="lora.safetensors", **layers)
    return folder / "lora.safetensors"


def fresh_render(base: str, request: RenderRequest, lora: Path | None, prompt: str) -> list[bytes]:
    """The reference: a new base pipeline, this one LoRA (or none), plain diffusers calls."""
    pipe = load_base_pipeline(base, device=torch.device("cpu"), dtype=None, cache_dir=None)
    pipe.scheduler = dpm_solver_pp(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    generators = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.n)]
    with torch.inference_mode():
        images = pipe(
            prompt=prompt,
            negative_prompt=request.negative_prompt or None,
            num_images_per_prompt=request.n,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=generators,
        ).images
    return [im.tobytes() for im in images]


def pixels(rendered: list[Any]) -> list[bytes]:
    return [r.image.tobytes() for r in rendered]


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Any:
    # The tiny models gain nothing from a second thread, and on a CPU shared with other test processes
    # OpenMP's spinning threads make each render several times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("tiny-sd", device="cpu", max_resident=2)


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoraRef]:
    root = tmp_path_factory.mktemp("loras")
    specs: dict[str, dict[str, Any]] = {
        # A also adapts the text encoder; B touches fewer layers at another rank: the layers A adds and B
        # lacks are exactly where a leak would show.
        "a": {"seed": 1, "text_encoder": True},
        "b": {"seed": 2, "rank": 2, "targets": ("to_q", "to_v")},
        "c": {"seed": 3},
    }
    out = {}
    for name, spec in specs.items():
        folder = root / name
        folder.mkdir()
        out[name] = LoraRef(f"model-{name}", make_lora("tiny-sd", folder, **spec))
    return out


def test_img2img_shares_the_loaded_modules(renderer: Renderer) -> None:
    txt2img, img2img = renderer.pipelines
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert getattr(img2img, name) is getattr(txt2img, name), name
    assert type(txt2img.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert txt2img.scheduler.config.algorithm_type == "dpmsolver++"
    assert txt2img.scheduler.config.use_karras_sigmas


def test_a_then_b_then_a_equals_each_lora_alone(renderer: Renderer, loras: dict[str, LoraRef]) -> None:
    a, b = loras["a"], loras["b"]
    prompt = "photo of sks man, studio light"
    first_a = pixels(renderer.render(REQUEST, a))
    then_b = pixels(renderer.render(REQUEST, b))
    again_a = pixels(renderer.render(REQUEST, a))
    bare = pixels(renderer.render(REQUEST, None))

    assert renderer.pipelines[0].get_list_adapters()["text_encoder"] == [renderer.adapters.slot_of("model-a")]
    assert first_a == again_a == fresh_render("tiny-sd", REQUEST, a.path, prompt)
    assert then_b == fresh_render("tiny-sd", REQUEST, b.path, prompt)
    # no LoRA after A and B is exactly the bare base
    assert bare == fresh_render("tiny-sd", REQUEST, None, prompt)
    # and the LoRAs really do change the pictures, so the equalities above mean something
    assert len({first_a[0], then_b[0], bare[0]}) == 3


def test_lru_evicts_and_reloads(renderer: Renderer, loras: dict[str, LoraRef]) -> None:
    small = RenderRequest("photo of {subject}", subject="sks man", n=1, width=64, height=64, steps=2)
    before = pixels(renderer.render(small, loras["a"]))
    renderer.render(small, loras["b"])
    renderer.load(loras["c"])  # preloading counts as use; max_resident=2: A, the least recently used, goes
    assert renderer.resident_models == ["model-b", "model-c"]
    listed = renderer.pipelines[0].get_list_adapters()
    slots = renderer.adapters
    assert sorted(listed["unet"]) == sorted([slots.slot_of("model-b"), slots.slot_of("model-c")])
    assert slots.slot_of("model-a") is None and listed.get("text_encoder", []) == []  # only A adapted it
    assert pixels(renderer.render(small, loras["a"])) == before
    assert renderer.resident_models == ["model-c", "model-a"]
    assert renderer.evict("model-a") and not renderer.evict("model-a")


def test_a_retrained_model_under_the_same_id_is_reloaded(
    renderer: Renderer, loras: dict[str, LoraRef], tmp_path: Path
) -> None:
    small = RenderRequest("photo of {subject}", subject="sks man", n=1, width=64, height=64, steps=2)
    path = tmp_path / "lora.safetensors"
    path.write_bytes(loras["a"].path.read_bytes())
    first = pixels(renderer.render(small, LoraRef("model-r", path)))
    path.write_bytes(loras["b"].path.read_bytes())
    second = pixels(renderer.render(small, LoraRef("model-r", path)))
    assert second == pixels(renderer.render(small, loras["b"])) != first


def test_n_images_with_consecutive_seeds(renderer: Renderer) -> None:
    three = RenderRequest("photo of {subject}", subject="sks man", seed=40, n=3, width=64, height=64, steps=2)
    batch = renderer.render(three)
    assert [r.seed for r in batch] == [40, 41, 42]
    assert len(set(pixels(batch))) == 3
    # image i is the picture seed+i makes on its own (batched maths may differ in the last bit)
    alone = renderer.render(
        RenderRequest("photo of {subject}", subject="sks man", seed=41, width=64, height=64, steps=2)
    )[0]
    assert mean_diff(alone.image, batch[1].image) < 0.5 < mean_diff(alone.image, batch[0].image)


def test_png_carries_the_generation_parameters(renderer: Renderer, loras: dict[str, LoraRef]) -> None:
    out = renderer.render(REQUEST, loras["b"])[1]
    params = read_png_params(out.png)
    assert params == out.params
    assert (params.prompt, params.negative_prompt) == ("photo of sks man, studio light", "blurry")
    assert (params.seed, params.steps, params.guidance, params.sampler) == (12, STEPS, 6.0, SAMPLER)
    assert (params.width, params.height, params.base_model, params.lora, params.mode) == (
        64,
        64,
        "tiny-sd",
        "model-b",
        "txt2img",
    )
    assert params.strength is None and params.flagged is None
    with Image.open(io.BytesIO(out.png)) as im:
        assert im.convert("RGB").tobytes() == out.image.tobytes()
        assert "Seed: 12" in im.text["parameters"]


def test_variation_and_upscale_sizes_and_sources(renderer: Renderer, loras: dict[str, LoraRef]) -> None:
    src1, src2 = (
        r.image for r in renderer.render(RenderRequest("p", seed=1, n=2, width=64, height=72, steps=2))
    )
    vary = RenderRequest(
        "photo of {subject}", subject="sks man", mode="variation", source=src1, steps=4, seed=3
    )
    v1 = renderer.render(vary, loras["a"])[0]
    assert v1.image.size == (64, 72)
    assert v1.params.mode == "variation" and v1.params.strength == 0.6
    v2 = renderer.render(RenderRequest(**{**vary.__dict__, "source": src2}), loras["a"])[0]
    # same seed and prompt, another source: another picture (the tiny random VAE garbles any source, so
    # nearness to the source would prove nothing here)
    assert mean_diff(v1.image, v2.image) > 1

    steps: list[tuple[int, int]] = []
    upscale = RenderRequest("photo of {subject}", subject="sks man", mode="upscale", source=src1, steps=3)
    up = renderer.render(upscale, loras["a"], progress=lambda step, total: steps.append((step, total)))[0]
    assert up.image.size == (128, 144)
    assert up.params.strength == 0.3 and read_png_params(up.png).mode == "upscale"
    # strength 0.3 of 3 steps is under one step: the renderer stretches the schedule so that one step runs
    assert steps == [(1, 1)]
    up2 = renderer.render(RenderRequest(**{**upscale.__dict__, "source": src2}), loras["a"])[0]
    assert mean_diff(up.image, up2.image) > 1


def test_prompt_check_refuses_before_rendering(loras: dict[str, LoraRef]) -> None:
    seen: list[str] = []

    def no_fire(prompt: str) -> None:
        seen.append(prompt)
        if "fire" in prompt:
            raise PromptRefused("prompts about fire are not allowed here")

    def never(image: Image.Image) -> ImageVerdict:  # pragma: no cover - must not be reached
        raise AssertionError("image check ran for a refused prompt")

    strict = Renderer("tiny-sd", prompt_check=no_fire, image_check=never)
    with pytest.raises(PromptRefused, match="not allowed") as caught:
        strict.render(
            RenderRequest("{subject} on fire", subject="sks man", width=64, height=64, steps=1), loras["a"]
        )
    assert caught.value.reason == "prompts about fire are not allowed here"
    assert seen == ["sks man on fire"]  # the check sees the filled prompt
    assert strict.resident_models == []  # refused before the LoRA was even loaded


def test_image_check_replaces_failing_images(loras: dict[str, LoraRef]) -> None:
    verdicts: list[ImageVerdict] = [ImageVerdict(True), ImageVerdict(False, "nsfw score 0.97")]
    checked: list[Image.Image] = []

    def check(image: Image.Image) -> ImageVerdict:
        checked.append(image)
        return verdicts[len(checked) - 1]

    guarded = Renderer("tiny-sd", image_check=check)
    ok, bad = guarded.render(
        RenderRequest("photo of {subject}", subject="sks man", n=2, width=64, height=64, steps=2), loras["b"]
    )
    assert ok.flagged is None and ok.image is checked[0]
    assert bad.flagged == "nsfw score 0.97"
    assert bad.image.size == (64, 64) and bad.image.getextrema() == ((0, 0), (0, 0), (0, 0))
    assert read_png_params(bad.png).flagged == "nsfw score 0.97"
    with Image.open(io.BytesIO(bad.png)) as im:
        assert im.convert("RGB").getextrema() == ((0, 0), (0, 0), (0, 0))


def test_pixel_cap_refused(tmp_path: Path) -> None:
    settings = load_settings(
        base_model="tiny-sd",
        device="cpu",
        model_cache_dir=str(tmp_path),
        render_max_pixels=64 * 64,
        render_resident_loras=3,
    )
    capped = Renderer.from_settings(settings)
    assert (capped.max_resident, capped.max_pixels, capped.device.type) == (3, 4096, "cpu")
    with pytest.raises(BadRenderRequest, match="64x72 is more than this renderer's 4,096 pixel limit"):
        capped.render(RenderRequest("p", width=64, height=72, steps=1))
    with pytest.raises(BadRenderRequest, match="128x128 is more than"):
        capped.render(RenderRequest("p", mode="upscale", source=Image.new("RGB", (64, 64)), steps=1))


def test_truncated_source_image_is_a_bad_request(renderer: Renderer) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, format="PNG")
    truncated = Image.open(io.BytesIO(buffer.getvalue()[:-40]))  # lazily opened, as the agent does
    with pytest.raises(BadRenderRequest, match="cannot be read"):
        renderer.render(RenderRequest("p", mode="variation", source=truncated, steps=2))


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "lora.safetensors", "the LoRA file is missing"),
        (b"", "lora.safetensors", "empty or too large"),
        (b"\x80\x04pickle", "lora.bin", "must be a .safetensors file"),
        (b"not a safetensors file at all", "lora.safetensors", "does not fit base model tiny-sd"),
    ],
)
def test_unusable_lora_files_are_refused(
    renderer: Renderer, tmp_path: Path, content: bytes | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    before = renderer.resident_models
    with pytest.raises(LoraLoadError, match=message):
        renderer.render(REQUEST, LoraRef("model-bad", path))
    assert renderer.resident_models == before


def test_lora_for_another_base_leaves_nothing_behind(renderer: Renderer, tmp_path: Path) -> None:
    xl_lora = make_lora("tiny-sdxl", tmp_path, 5)
    before = renderer.resident_models

    def adapters() -> set[str]:
        return {name for names in renderer.pipelines[0].get_list_adapters().values() for name in names}

    adapters_before = adapters()
    with pytest.raises(LoraLoadError, match=r"does not fit base model tiny-sd .*another base model"):
        renderer.render(REQUEST, LoraRef("model-xl", xl_lora))
    assert renderer.resident_models == before
    assert adapters() == adapters_before
    prompt = "photo of sks man, studio light"
    assert pixels(renderer.render(REQUEST)) == fresh_render("tiny-sd", REQUEST, None, prompt)


def test_sdxl_shaped_pipeline_renders_with_a_lora(tmp_path: Path) -> None:
    xl = Renderer("tiny-sdxl")
    lora = LoraRef("model-xl", make_lora("tiny-sdxl", tmp_path, 6))
    request = RenderRequest("photo of {subject}", subject="sks woman", n=1, width=64, height=64, steps=2)
    bare = xl.render(request)[0]
    with_lora = xl.render(request, lora)[0]
    assert with_lora.image.size == (64, 64)
    assert mean_diff(bare.image, with_lora.image) > 1
    assert with_lora.image.tobytes() == fresh_render("tiny-sdxl", request, lora.path, "photo of sks woman")[0]
    vary = xl.render(
        RenderRequest(
            "photo of {subject}", subject="sks woman", mode="variation", source=with_lora.image, steps=3
        ),
        lora,
    )[0]
    assert vary.image.size == (64, 64) and vary.params.base_model == "tiny-sdxl"


# --- hotswap: a new member's LoRA reuses the least recently used slot ------------------------------------------


@pytest.fixture(scope="module")
def trained_loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoraRef]:
    """LoRAs as the trainer writes them (UNet and text encoder, peft config in the file), alpha != rank so that a
    scale left over from another member would show. p, q and r share one layout; s has another rank, t another
    alpha."""
    root = tmp_path_factory.mktemp("trained")
    specs: dict[str, dict[str, Any]] = {
        "p": {"seed": 21},
        "q": {"seed": 22},
        "r": {"seed": 23},
        "s": {"seed": 24, "rank": 2, "alpha": 4},
        "t": {"seed": 25, "alpha": 4},
    }
    out = {}
    for name, spec in specs.items():
        (root / name).mkdir()
        kwargs = {"rank": 4, "alpha": 8, "text_encoder": True, "metadata": True, **spec}
        out[name] = LoraRef(f"model-{name}", make_lora("tiny-sd", root / name, **kwargs))
    return out


SMALL = RenderRequest("photo of {subject}", subject="sks man", n=1, width=64, height=64, steps=2, seed=5)


def test_hotswap_into_the_lru_slot_equals_each_lora_alone(trained_loras: dict[str, LoraRef]) -> None:
    p, q, r = trained_loras["p"], trained_loras["q"], trained_loras["r"]
    swapping = Renderer("tiny-sd", max_resident=2)
    assert swapping.load(p) == "inject" and swapping.load(q) == "inject"
    first_p = pixels(swapping.render(SMALL, p))
    assert swapping.load(p) == "resident"
    slot_q = swapping.adapters.slot_of("model-q")
    # R takes over Q's slot (Q is least recently used): the same layers, no new adapter
    assert swapping.load(r) == "hotswap"
    assert swapping.adapters.slot_of("model-r") == slot_q and swapping.resident_models == [
        "model-p",
        "model-r",
    ]
    listed = swapping.pipelines[0].get_list_adapters()
    slots = sorted([slot_q, swapping.adapters.slot_of("model-p")])
    assert sorted(listed["unet"]) == sorted(listed["text_encoder"]) == slots
    with_r = pixels(swapping.render(SMALL, r))
    # Q comes back into P's slot (now the least recently used), then P into R's old slot
    with_q = pixels(swapping.render(SMALL, q))
    assert swapping.adapters.slot_of("model-q") != slot_q
    again_p = pixels(swapping.render(SMALL, p))
    assert swapping.adapters.slot_of("model-p") == slot_q
    prompt = "photo of sks man"
    assert with_r == fresh_render("tiny-sd", SMALL, r.path, prompt)
    assert with_q == fresh_render("tiny-sd", SMALL, q.path, prompt)
    assert first_p == again_p == fresh_render("tiny-sd", SMALL, p.path, prompt)
    assert len({first_p[0], with_q[0], with_r[0]}) == 3
    # the member's scale applies on top of the file's alpha/rank, and goes back to 1 after
    half = pixels(swapping.render(SMALL, LoraRef("model-p", p.path, scale=0.5)))
    assert half != again_p and pixels(swapping.render(SMALL, p)) == again_p
    assert pixels(swapping.render(SMALL)) == fresh_render("tiny-sd", SMALL, None, prompt)
    assert pixels(swapping.render(SMALL, p)) == again_p  # LoRA layers back on after the bare render


def test_another_rank_or_alpha_is_injected_not_hotswapped(trained_loras: dict[str, LoraRef]) -> None:
    single = Renderer("tiny-sd", max_resident=1)
    prompt = "photo of sks man"
    assert single.load(trained_loras["p"]) == "inject"
    for name in ("s", "t", "p"):  # rank 2 after rank 4; alpha 4 after rank 2; alpha 8 after alpha 4
        lora = trained_loras[name]
        assert single.load(lora) == "inject", name
        assert single.resident_models == [f"model-{name}"]
        assert pixels(single.render(SMALL, lora)) == fresh_render("tiny-sd", SMALL, lora.path, prompt), name
    single.adapters.hotswap = False  # the old path, kept for the benchmark: always a new adapter
    assert single.load(trained_loras["q"]) == "inject"
    single.adapters.hotswap = True
    r = trained_loras["r"]  # Q's layout, into Q's slot, which is the active one
    assert single.load(r) == "hotswap"
    assert pixels(single.render(SMALL, r)) == fresh_render("tiny-sd", SMALL, r.path, prompt)


def test_a_damaged_copy_of_a_same_layout_lora_keeps_the_lru_member(
    trained_loras: dict[str, LoraRef], tmp_path: Path
) -> None:
    p, q = trained_loras["p"], trained_loras["q"]
    single = Renderer("tiny-sd", max_resident=1)
    before = pixels(single.render(SMALL, p))
    data = q.path.read_bytes()
    broken = tmp_path / "lora.safetensors"
    # Q's header, the last tensor cut short: safetensors notices on opening, so the file never reaches the
    # hotswap (which would reuse P's slot) and fails to inject instead
    broken.write_bytes(data[: len(data) - 100])
    with pytest.raises(LoraLoadError, match="does not fit base model"):
        single.load(LoraRef("model-broken", broken))
    assert single.resident_models == ["model-p"]
    assert pixels(single.render(SMALL, p)) == before


def test_sdxl_hotswap_equals_the_lora_alone(tmp_path: Path) -> None:
    made = []
    for seed in (31, 32):
        (tmp_path / str(seed)).mkdir()
        path = make_lora("tiny-sdxl", tmp_path / str(seed), seed, text_encoder=True, metadata=True)
        made.append(LoraRef(f"model-xl{seed}", path))
    xl = Renderer("tiny-sdxl", max_resident=1)
    first = pixels(xl.render(SMALL, made[0]))
    assert xl.load(made[1]) == "hotswap"
    second = pixels(xl.render(SMALL, made[1]))
    assert second == fresh_render("tiny-sdxl", SMALL, made[1].path, "photo of sks man") != first


def test_a_second_lora_loads_beside_the_first_without_a_missing_weights_report(
    trained_loras: dict[str, LoraRef],
) -> None:
    from safetensors.torch import load_file

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    collect = Collect()
    peft_log = logging.getLogger("transformers.integrations.peft")
    peft_log.addHandler(collect)
    try:
        fresh = Renderer("tiny-sd", max_resident=2)
        assert fresh.load(trained_loras["p"]) == "inject"
        assert fresh.load(trained_loras["q"]) == "inject"
    finally:
        peft_log.removeHandler(collect)
    # transformers reported the first slot's text-encoder weights as MISSING, "newly initialized"; they are not
    assert not [m for m in seen if "LOAD REPORT" in m]
    state = fresh.pipelines[0].text_encoder.state_dict()
    for member in ("p", "q"):
        slot = fresh.adapters.slot_of(f"model-{member}")
        in_file = load_file(trained_loras[member].path)
        in_file = {  # diffusers' names in the file, peft's in the model
            k.removeprefix("text_encoder.")
            .replace("lora_linear_layer.down", "lora_A")
            .replace("lora_linear_layer.up", "lora_B"): v
            for k, v in in_file.items()
            if k.startswith("text_encoder.")
        }
        loaded = {k.replace(f".{slot}.", "."): v for k, v in state.items() if f".{slot}." in k}
        assert in_file and loaded.keys() == in_file.keys(), sorted(loaded)[:2]
        assert all(torch.equal(loaded[k], in_file[k]) for k in in_file)
