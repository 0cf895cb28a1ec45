"""PNG text chunks: what a render writes, a reader gets back; foreign files are refused clearly."""

from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin

from gpu_agent.engine.pngmeta import GenerationParams, PngMetaError, png_bytes, read_png_params

PARAMS = GenerationParams(
    prompt="photo of sks man in Москва, «golden hour»",
    negative_prompt="blurry, lowres",
    seed=1234567890123,
    steps=30,
    guidance=6.5,
    sampler="DPM++ 2M Karras",
    width=64,
    height=96,
    base_model="tiny-sd",
    mode="variation",
    lora="model-42",
    strength=0.6,
)


def _image() -> Image.Image:
    return Image.new("RGB", (64, 96), (10, 200, 30))


def test_parameters_round_trip_including_non_latin_text() -> None:
    data = png_bytes(_image(), PARAMS)
    assert read_png_params(data) == PARAMS
    with Image.open(io.BytesIO(data)) as im:
        # the pixels are untouched by the metadata
        assert im.convert("RGB").tobytes() == _image().tobytes()
        chunks = im.text
    # Cyrillic does not fit Latin-1 tEXt: it travels as UTF-8 iTXt
    assert isinstance(chunks["prompt"], PngImagePlugin.iTXt)
    assert chunks["seed"] == "1234567890123"
    assert chunks["Software"] == "Photogen"


def test_a1111_parameters_string() -> None:
    text = read_png_params_text(png_bytes(_image(), PARAMS))
    lines = text.split("\n")
    assert lines[0] == PARAMS.prompt
    assert lines[1] == "Negative prompt: blurry, lowres"
    assert lines[2].startswith("Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567890123, ")
    assert "Size: 64x96" in lines[2] and "Model: tiny-sd" in lines[2]
    assert "Denoising strength: 0.6" in lines[2] and "Lora: model-42" in lines[2]


def read_png_params_text(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        return im.text["parameters"]


def test_a_bare_txt2img_render_has_no_lora_or_strength() -> None:
    bare = GenerationParams(**{**PARAMS.__dict__, "lora": None, "strength": None, "mode": "txt2img"})
    data = png_bytes(_image(), bare)
    assert read_png_params(data) == bare
    assert "Lora:" not in read_png_params_text(data)


def test_files_without_our_parameters_are_refused() -> None:
    plain = io.BytesIO()
    _image().save(plain, format="PNG")
    with pytest.raises(PngMetaError, match="no Photogen parameters"):
        read_png_params(plain.getvalue())
    jpeg = io.BytesIO()
    _image().save(jpeg, format="JPEG")
    with pytest.raises(PngMetaError, match="not a PNG but JPEG"):
        read_png_params(jpeg.getvalue())
    with pytest.raises(PngMetaError, match="not a readable PNG"):
        read_png_params(b"\x89PNG\r\n\x1a\n garbage")


def test_tampered_numbers_are_refused() -> None:
    info = PngImagePlugin.PngInfo()
    for key, value in PARAMS.chunks().items():
        info.add_text(key, "many" if key == "seed" else value)
    buffer = io.BytesIO()
    _image().save(buffer, format="PNG", pnginfo=info)
    with pytest.raises(PngMetaError, match="do not parse"):
        read_png_params(buffer.getvalue())
