"""Safe decoding of one photo: formats by content, EXIF orientation, every mode to RGB, no metadata, refusals."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import photo_cases as pc
import pytest
from PIL import Image, ImageFile

from gpu_agent.photos import (
    AnimatedPhoto,
    EmptyPhoto,
    FileTooLarge,
    TooManyPixels,
    TruncatedPhoto,
    UnreadablePhoto,
    UnsupportedFormat,
    decode_photo,
    sniff_format,
)

LIMITS = {"max_bytes": 20 * 1024 * 1024, "max_pixels": 40_000_000}


def decode(data: bytes, label: str = "photo 3 (IMG_1.jpg)") -> Image.Image:
    return decode_photo(data, label, **LIMITS).image


@pytest.fixture(scope="module")
def astronaut(faces_dir: Path) -> Image.Image:
    return pc.load(faces_dir, "astronaut.png")


def diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def test_every_accepted_format_decodes_to_the_same_rgb_picture(astronaut: Image.Image) -> None:
    buf = io.BytesIO()
    astronaut.save(buf, "WEBP", quality=90)
    for data, fmt in [
        (pc.jpeg(astronaut), "JPEG"),
        (pc.png(astronaut), "PNG"),
        (buf.getvalue(), "WEBP"),
        (pc.heic(astronaut), "HEIF"),
    ]:
        out = decode_photo(data, "x", **LIMITS)
        assert out.format == fmt and out.image.mode == "RGB" and out.image.size == (512, 512)
        assert diff(out.image, astronaut) < 6, fmt


def test_type_comes_from_the_content_not_the_name(astronaut: Image.Image) -> None:
    assert sniff_format(pc.png(astronaut)) == "PNG"
    assert decode(pc.png(astronaut), "photo 1 (really-a-png.jpg)").size == (512, 512)
    with pytest.raises(UnsupportedFormat) as err:
        decode(b"just some text, not a photo\n", "photo 3 (IMG_1.jpg)")
    assert str(err.value) == (
        "photo 3 (IMG_1.jpg) is not a picture we can read: the file is not a JPEG, PNG, WebP or HEIC image"
    )


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(astronaut: Image.Image, orientation: int) -> None:
    out = decode(pc.with_orientation(astronaut, orientation))
    assert out.size == (512, 512)
    assert diff(out, astronaut) < 4  # upright again; a wrong turn differs by ~60


def test_exif_turn_of_a_non_square_photo_swaps_its_sides(astronaut: Image.Image) -> None:
    wide = astronaut.crop((0, 0, 512, 300))
    out = decode(pc.with_orientation(wide, 6))
    assert out.size == (512, 300) and diff(out, wide) < 4


def test_modes_become_rgb(astronaut: Image.Image) -> None:
    cmyk = astronaut.convert("CMYK")
    out = decode(pc.jpeg(cmyk))
    assert out.mode == "RGB" and diff(out, astronaut) < 20
    assert decode(pc.png(astronaut.convert("P"))).mode == "RGB"
    assert decode(pc.jpeg(astronaut.convert("L"))).mode == "RGB"


def test_alpha_is_composited_on_white(astronaut: Image.Image) -> None:
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 100, 100))  # a transparent corner that is black underneath
    out = decode(pc.png(rgba))
    assert out.getpixel((10, 10)) == (255, 255, 255)
    assert out.getpixel((300, 300)) == astronaut.getpixel((300, 300))
    la = astronaut.convert("LA")
    la.putalpha(Image.new("L", la.size, 0))
    assert decode(pc.png(la)).getpixel((256, 256)) == (255, 255, 255)
    pal = Image.new("P", (64, 64), 1)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.paste(0, (0, 0, 32, 64))
    out = decode(pc.png(pal, transparency=0))
    assert out.getpixel((5, 5)) == (255, 255, 255) and out.getpixel((50, 5)) == (200, 10, 10)


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (32, 1))
    img = Image.fromarray(ramp)  # I;16
    out = np.asarray(decode(pc.png(img)))
    assert out.shape == (32, 256, 3)
    assert (
        out[0, 0, 0] < 5 and 120 < out[0, 128, 0] < 135 and out[0, 255, 0] > 250
    )  # a clipped one is all 255


def test_metadata_is_dropped(astronaut: Image.Image) -> None:
    data = pc.with_gps(astronaut)
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(pc.GPS_IFD)  # the upload does carry GPS
    out = decode(data)
    assert out.info == {} and len(out.getexif()) == 0
    buf = io.BytesIO()
    out.save(buf, "JPEG")
    assert b"Exif" not in buf.getvalue() and b"home address" not in buf.getvalue()


def test_empty_file() -> None:
    with pytest.raises(EmptyPhoto, match="the file is empty"):
        decode(b"")


def test_oversize_file_is_refused_before_reading() -> None:
    data = b"\xff\xd8\xff" + bytes(30 * 1024 * 1024)
    with pytest.raises(FileTooLarge, match=r"30\.0 MB; the limit is 20 MB"):
        decode(data)


def test_png_header_claiming_50000_by_50000_is_refused_before_decoding() -> None:
    start = time.perf_counter()
    with pytest.raises(TooManyPixels):
        decode(pc.png_bomb_header(50_000, 50_000))
    assert time.perf_counter() - start < 1.0  # decoding 2.5 gigapixels would take minutes and 7.5 GB


def test_header_over_our_limit_but_under_pillows_is_refused_too() -> None:
    with pytest.raises(TooManyPixels, match="7000×7000 pixels is over the limit of 40 megapixels"):
        decode(pc.png_bomb_header(7000, 7000))


def test_truncated_jpeg(faces_dir: Path) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # nobody may turn Pillow's guard off process-wide
    with pytest.raises(TruncatedPhoto, match="cut short"):
        decode(pc.truncated_jpeg(faces_dir))


def test_truncated_png(astronaut: Image.Image) -> None:
    data = pc.png(astronaut)
    with pytest.raises(UnreadablePhoto):
        decode(data[: len(data) // 2])


def test_gif_is_refused_and_animations_are_refused() -> None:
    with pytest.raises(UnsupportedFormat, match="GIF"):
        decode(pc.animated("GIF"))
    for fmt in ("PNG", "WEBP"):
        with pytest.raises(AnimatedPhoto, match="animated"):
            decode(pc.animated(fmt))


def test_garbage_after_a_valid_magic_is_unreadable() -> None:
    for data in (
        b"\xff\xd8\xff\xe0" + b"\x00" * 100,
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 50,
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x01" * 30,
        b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40,
    ):
        with pytest.raises(UnreadablePhoto):
            decode(data)


def test_importing_the_photo_checks_pulls_in_no_ml_stack() -> None:
    code = (
        "import sys, gpu_agent.photos; bad = [m for m in ('torch', 'diffusers', 'transformers', 'peft') "
        "if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_a_turned_iphone_heic_comes_out_upright(astronaut: Image.Image) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    wide = astronaut.crop((0, 0, 512, 300))
    exif = Image.Exif()
    exif[pc.ORIENTATION] = 6
    buf = io.BytesIO()
    wide.transpose(Image.Transpose.ROTATE_90).save(buf, "HEIF", exif=exif.tobytes())
    out = decode(buf.getvalue())
    assert out.size == (512, 300) and diff(out, wide) < 6  # exactly one turn: neither none nor two


def test_an_icc_profile_is_honoured_and_not_kept(astronaut: Image.Image) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    astronaut.save(buf, "JPEG", quality=92, icc_profile=srgb)
    out = decode(buf.getvalue())
    assert "icc_profile" not in out.info and diff(out, astronaut) < 4
    broken = io.BytesIO()
    astronaut.save(broken, "JPEG", quality=92, icc_profile=b"\x00" * 200)  # a damaged profile is ignored
    assert diff(decode(broken.getvalue()), astronaut) < 4
