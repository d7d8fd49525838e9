"""Image input hygiene: every format and input kind a client sends decodes to a read-only 8-bit RGB
frame (EXIF-oriented, downscaled to the working size); corrupt, unsupported, oversize (including
decompression bombs), undersize and empty input are clear `InputError`s.  Test images are generated
here with Pillow (no network); the three committed fixtures are only decoded."""

from __future__ import annotations

import base64
import io
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from empathic_agent.errors import InputError
from empathic_agent.perceive import image as image_module
from empathic_agent.perceive.image import (
    EmptyImageError,
    ImageDecodeError,
    ImageError,
    ImageFrame,
    ImageLimits,
    ImageTooLargeError,
    ImageTooSmallError,
    decode_image,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
FORMATS = ["jpeg", "png", "webp", "gif", "bmp"]
LOSSLESS = {"png", "bmp", "gif"}  # gif: the four flat colours below fit its palette exactly
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def quadrants(w: int = 64, h: int = 48) -> np.ndarray:
    """(h, w, 3) uint8: red | green over blue | white — flat areas survive lossy codecs."""
    a = np.empty((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = RED
    a[: h // 2, w // 2:] = GREEN
    a[h // 2:, : w // 2] = BLUE
    a[h // 2:, w // 2:] = WHITE
    return a


def encode(img: Image.Image | np.ndarray, fmt: str, **kw) -> bytes:
    im = Image.fromarray(img) if isinstance(img, np.ndarray) else img
    buf = io.BytesIO()
    if fmt.lower() == "jpeg":
        kw.setdefault("quality", 95)
    im.save(buf, fmt.upper(), **kw)
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 1-bit pixels, with only a sliver of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(1000)))
            + png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A complete, valid 30000x30000 1-bit PNG (~110 kB; 900 MP, 2.7 GB as RGB once decoded).

    Built with streaming zlib: `Image.new("1", (30000, 30000))` would itself allocate 900 MB
    (Pillow stores mode "1" one byte per pixel)."""
    side = 30_000
    row = 1 + (side + 7) // 8  # filter byte + packed bits
    comp = zlib.compressobj(9)
    block = bytes(row * 1000)
    idat = b"".join(comp.compress(block) for _ in range(side // 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))
    assert len(data) < 200_000
    return data


def assert_quadrants(frame: ImageFrame, *, exact: bool, w: int = 64, h: int = 48) -> None:
    assert (frame.width, frame.height) == (w, h)
    expected = quadrants(w, h).astype(int)
    err = np.abs(frame.rgb.astype(int) - expected)
    if exact:
        assert err.max() == 0
    else:
        assert err.mean() < 6


def assert_valid_frame(frame: ImageFrame) -> None:
    assert isinstance(frame, ImageFrame)
    assert frame.rgb.dtype == np.uint8 and frame.rgb.ndim == 3 and frame.rgb.shape[2] == 3
    assert frame.rgb.flags.c_contiguous and not frame.rgb.flags.writeable


# --- every format from every kind of encoded input ----------------------------------------------
INPUT_KINDS = ["bytes", "bytearray", "memoryview", "path_str", "pathlike", "file_object", "data_url"]


def as_input(kind: str, data: bytes, fmt: str, tmp_path: Path):
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    if kind in ("path_str", "pathlike"):
        path = tmp_path / f"picture.{fmt}"
        path.write_bytes(data)
        return str(path) if kind == "path_str" else path
    if kind == "file_object":
        return io.BytesIO(data)
    if kind == "data_url":
        return data_url(data, f"image/{fmt}")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_from_every_input_kind(fmt, kind, tmp_path):
    data = encode(quadrants(), fmt)
    frame = decode_image(as_input(kind, data, fmt, tmp_path))
    assert_valid_frame(frame)
    assert frame.source_format == fmt
    assert frame.original_size == (64, 48) and frame.scale == 1.0
    assert_quadrants(frame, exact=fmt in LOSSLESS)


def test_real_file_object_on_disk(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(encode(quadrants(), "png"))
    with open(path, "rb") as fh:
        assert_quadrants(decode_image(fh), exact=True)


def test_mpo_multi_picture_jpeg_is_accepted():
    im = Image.fromarray(quadrants())
    frame = decode_image(encode(im, "mpo", save_all=True, append_images=[im]))
    assert frame.source_format == "mpo"
    assert_quadrants(frame, exact=False)


def test_animated_gif_uses_the_first_frame():
    first, second = Image.fromarray(quadrants()), Image.new("RGB", (64, 48), BLUE)
    frame = decode_image(encode(first, "gif", save_all=True, append_images=[second], duration=100))
    assert_quadrants(frame, exact=True)


def test_lossless_webp_is_exact():
    assert_quadrants(decode_image(encode(quadrants(), "webp", lossless=True)), exact=True)


def test_fixture_images_decode():
    expected = {"astronaut.jpg": (384, 384), "cat.jpg": (300, 225), "coffee.jpg": (300, 200)}
    assert sorted(p.name for p in FIXTURES.glob("*.jpg")) == sorted(expected)
    for name, size in expected.items():
        frame = decode_image(FIXTURES / name)
        assert_valid_frame(frame)
        assert frame.source_format == "jpeg"
        assert (frame.width, frame.height) == size == frame.original_size
        assert 20 < frame.rgb.mean() < 235 and frame.rgb.std() > 10  # a real picture, not a flat fill


# --- data URLs ----------------------------------------------------------------------------------
def test_data_url_variants():
    data = encode(quadrants(), "png")
    b64 = base64.b64encode(data).decode()
    unpadded = b64.rstrip("=")
    wrapped = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))
    urlsafe = base64.urlsafe_b64encode(data).decode()
    percent = "data:image/png," + "".join(f"%{b:02X}" for b in data)
    for url in (f"data:image/png;base64,{unpadded}", f"DATA:IMAGE/PNG;BASE64,{wrapped}",
                f"data:image/png;base64,{urlsafe}", percent, f"data:image/jpeg;base64,{b64}"):
        assert_quadrants(decode_image(url), exact=True)


def test_invalid_base64_in_data_url():
    with pytest.raises(ImageDecodeError, match="base64"):
        decode_image("data:image/png;base64,iVBORw0KGgo!!!not*base64")


def test_data_url_errors():
    with pytest.raises(EmptyImageError):
        decode_image("data:image/png;base64,")
    with pytest.raises(ImageDecodeError, match="text/plain, not an image"):
        decode_image("data:text/plain;base64," + base64.b64encode(b"hello").decode())
    with pytest.raises(ImageDecodeError, match="malformed"):
        decode_image("data:image/png;base64")
    with pytest.raises(ImageDecodeError):  # valid base64, but not an image
        decode_image("data:image/png;base64," + base64.b64encode(b"\x00\x01" * 100).decode())


def test_oversize_data_url_is_rejected_before_decoding():
    limits = ImageLimits(max_bytes=1000)
    with pytest.raises(ImageTooLargeError, match="limit is 1.0 kB"):
        decode_image(data_url(bytes(5000)), limits=limits)


# --- numpy arrays -------------------------------------------------------------------------------
def test_uint8_rgb_array_is_copied_not_frozen():
    a = quadrants()
    frame = decode_image(a)
    assert_valid_frame(frame)
    assert frame.source_format == "array"
    assert np.array_equal(frame.rgb, a)
    assert a.flags.writeable and not np.shares_memory(a, frame.rgb)  # the caller's array untouched
    a[:] = 0
    assert frame.rgb.max() == 255


@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 1)])
def test_uint8_gray_arrays_become_rgb(shape):
    g = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) % 256
    frame = decode_image(g.astype(np.uint8).reshape(shape))
    assert frame.rgb.shape == (48, 64, 3)
    for c in range(3):
        assert np.array_equal(frame.rgb[..., c], g)


def test_rgba_array_opaque_drops_alpha_exactly():
    rgba = np.dstack([quadrants(), np.full((48, 64), 255, np.uint8)])
    assert_quadrants(decode_image(rgba), exact=True)


def test_rgba_array_transparent_is_composited_on_white():
    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent black
    rgba[:16, :, :] = (255, 0, 0, 255)  # top half opaque red
    rgba[16:, :16, :] = (0, 0, 0, 128)  # bottom-left: half-transparent black -> mid grey
    rgb = decode_image(rgba).rgb
    assert tuple(rgb[0, 0]) == RED
    assert tuple(rgb[-1, -1]) == WHITE
    assert np.all(np.abs(rgb[-1, 0].astype(int) - 127) <= 1)


def test_float_arrays_in_unit_range():
    f = quadrants().astype(np.float32) / 255
    assert_quadrants(decode_image(f), exact=True)
    assert_quadrants(decode_image(f.astype(np.float64)), exact=True)
    half = decode_image(np.full((20, 20), 0.5, np.float16))
    assert np.all(half.rgb == 128)


def test_float_arrays_out_of_range_or_nan_are_rejected():
    with pytest.raises(ImageDecodeError, match=r"\[0, 1\]"):
        decode_image(quadrants().astype(np.float32))  # 0-255 floats: ambiguous, refused
    for bad in (np.nan, np.inf, -np.inf):
        a = np.full((20, 20, 3), 0.5, np.float32)
        a[3, 4, 1] = bad
        with pytest.raises(ImageDecodeError, match="NaN"):
            decode_image(a)


def test_uint16_array_is_scaled_to_8_bits():
    a = np.zeros((20, 30, 3), np.uint16)
    a[:, :10] = 65535
    a[:, 10:20] = 32768
    rgb = decode_image(a).rgb
    assert np.all(rgb[:, :10] == 255) and np.all(rgb[:, 10:20] == 128) and np.all(rgb[:, 20:] == 0)


@pytest.mark.parametrize("dtype", [bool, np.int8, np.int16, np.int32, np.int64, np.uint32, np.complex64,
                                   object])
def test_unsupported_dtypes_are_rejected(dtype):
    with pytest.raises(ImageDecodeError, match="dtype"):
        decode_image(np.zeros((20, 20, 3), dtype=dtype))


@pytest.mark.parametrize("shape", [(400,), (20, 20, 2), (20, 20, 5), (2, 20, 20, 3), (20, 20, 3, 1)])
def test_bad_shapes_are_rejected(shape):
    with pytest.raises(ImageDecodeError, match="shape"):
        decode_image(np.zeros(shape, np.uint8))


def test_channels_first_array_gets_a_hint():
    with pytest.raises(ImageDecodeError, match=r"channels first\? transpose it to \(20, 30, 3\)"):
        decode_image(np.zeros((3, 20, 30), np.uint8))


def test_non_contiguous_array_view():
    a = quadrants()
    flipped = a[:, ::-1]
    assert np.array_equal(decode_image(flipped).rgb, flipped)
    assert np.array_equal(decode_image(a[::2, ::2]).rgb, a[::2, ::2])


# --- PIL images and frames ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGB", "L", "P", "1", "CMYK", "YCbCr", "LA", "RGBA", "I;16", "I", "LAB"])
def test_pil_images_of_every_mode(mode):
    im = Image.fromarray(quadrants()).convert(mode)
    frame = decode_image(im)
    assert_valid_frame(frame)
    assert frame.source_format == "pil" and frame.original_size == (64, 48)


def test_pil_rgb_is_exact_and_l_is_gray():
    assert_quadrants(decode_image(Image.fromarray(quadrants())), exact=True)
    g = decode_image(Image.new("L", (20, 20), 77)).rgb
    assert np.all(g == 77)


def test_pil_opened_from_file_keeps_its_format(tmp_path):
    path = tmp_path / "q.png"
    path.write_bytes(encode(quadrants(), "png"))
    with Image.open(path) as im:
        frame = decode_image(im)
    assert frame.source_format == "png"
    assert_quadrants(frame, exact=True)


def test_transparent_png_and_gif_are_composited_on_white():
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 16, 16))
    for data in (encode(rgba, "png"), encode(rgba, "gif"), encode(rgba, "webp", lossless=True)):
        rgb = decode_image(data).rgb
        assert tuple(rgb[0, 0]) == BLUE
        assert tuple(rgb[-1, -1]) == WHITE


def test_16_bit_png_is_scaled_not_clipped():
    a = np.zeros((20, 30), np.uint16)
    a[:, :10] = 65535
    a[:, 10:20] = 32768
    data = encode(Image.fromarray(a), "png")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    rgb = decode_image(data).rgb
    assert np.all(rgb[:, :10] == 255) and np.all(rgb[:, 10:20] == 128) and np.all(rgb[:, 20:] == 0)


def test_image_frame_is_passed_through_unchanged():
    frame = decode_image(quadrants())
    assert decode_image(frame) is frame
    assert decode_image(frame, limits=ImageLimits(min_side=1000)) is frame


def test_image_frame_validates_and_describes_itself():
    with pytest.raises(ValueError, match="uint8"):
        ImageFrame(rgb=np.zeros((10, 10), np.uint8))
    frame = ImageFrame(rgb=np.zeros((10, 20, 3), np.uint8))
    assert frame.original_size == (20, 10) and frame.scale == 1.0 and frame.source_format == "array"
    assert frame.info() == {"width": 20, "height": 10, "original_width": 20, "original_height": 10,
                            "scale": 1.0, "source_format": "array"}


# --- EXIF orientation ---------------------------------------------------------------------------
def marked(w: int = 60, h: int = 40) -> Image.Image:
    """Grey w x h image with a red 10x10 marker in the stored top-left corner."""
    a = np.full((h, w, 3), 128, np.uint8)
    a[:10, :10] = RED
    return Image.fromarray(a)


def exif_jpeg(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, "jpeg", exif=exif)


def is_red(px) -> bool:
    r, g, b = (int(v) for v in px)
    return r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(("orientation", "size", "corner"), [
    (1, (60, 40), "top_left"),
    (2, (60, 40), "top_right"),     # mirrored
    (3, (60, 40), "bottom_right"),  # rotated 180
    (6, (40, 60), "top_right"),     # stored rotated: display turns it 90 degrees clockwise
    (8, (40, 60), "bottom_left"),   # 90 degrees counter-clockwise
])
def test_exif_orientation_is_applied(orientation, size, corner):
    frame = decode_image(exif_jpeg(marked(), orientation))
    assert (frame.width, frame.height) == size == frame.original_size
    h, w = frame.height, frame.width
    corners = {"top_left": (4, 4), "top_right": (4, w - 5), "bottom_left": (h - 5, 4),
               "bottom_right": (h - 5, w - 5)}
    for name, (y, x) in corners.items():
        assert is_red(frame.rgb[y, x]) == (name == corner), name


def test_exif_orientation_with_downscaling():
    frame = decode_image(exif_jpeg(marked(3000, 2000), 6))
    assert frame.original_size == (2000, 3000)
    assert (frame.width, frame.height) == (853, 1280)
    assert frame.scale == pytest.approx(853 / 2000)
    assert is_red(frame.rgb[1, -2]) and not is_red(frame.rgb[1, 1])


def test_exif_orientation_of_a_pil_image_input():
    with Image.open(io.BytesIO(exif_jpeg(marked(), 6))) as im:
        frame = decode_image(im)
    assert (frame.width, frame.height) == (40, 60)


# --- corrupt, unsupported and wrong input -------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jpeg", "png", "gif", "bmp"])
def test_truncated_images_are_decode_errors(fmt):
    noise = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    data = encode(noise, fmt)
    with pytest.raises(ImageDecodeError, match=rf"corrupt or truncated \({fmt.upper()}\)"):
        decode_image(data[: len(data) // 2])


def test_truncated_webp_is_a_decode_error():
    data = encode(np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8), "webp")
    with pytest.raises(ImageDecodeError, match="corrupt"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("fmt", FORMATS)
def test_header_only_fragments_are_decode_errors(fmt):
    with pytest.raises(ImageDecodeError, match="corrupt"):
        decode_image(encode(quadrants(), fmt)[:20])


def test_truncation_leaves_the_global_pillow_setting_alone():
    data = encode(quadrants(), "jpeg")
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_random_bytes_are_a_decode_error():
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        decode_image(np.random.default_rng(2).bytes(5000))


def test_text_file_is_a_decode_error(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("Dear diary, today I felt\nquite good about things.\n" * 20)
    with pytest.raises(ImageDecodeError, match="text, not an image"):
        decode_image(path)
    with pytest.raises(ImageDecodeError, match="SVG"):
        decode_image(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>')


@pytest.mark.parametrize(("fmt", "name"), [("tiff", "TIFF"), ("ico", "ICO"), ("jpeg2000", "JPEG 2000")])
def test_unsupported_formats_are_named(fmt, name):
    from PIL import features

    if fmt == "jpeg2000" and not features.check("jpg_2000"):
        pytest.skip("Pillow built without OpenJPEG")
    with pytest.raises(ImageDecodeError, match=rf"{name} images are not supported; please send JPEG, PNG"):
        decode_image(encode(quadrants(), fmt))


def test_unsupported_formats_are_never_parsed(monkeypatch):
    from PIL import TiffImagePlugin

    def boom(*_a, **_k):
        raise AssertionError("the TIFF decoder must not be tried")

    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "_open", boom)
    with pytest.raises(ImageDecodeError, match="TIFF"):
        decode_image(b"II*\x00" + bytes(200))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="image file not found: .*nope.png"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="image file not found"):
        decode_image(str(tmp_path))
    with pytest.raises(ImageError, match="image file not found"):
        decode_image("bad\x00name.png")


def test_urls_are_not_fetched():
    with pytest.raises(ImageDecodeError, match="not fetched"):
        decode_image("https://example.com/face.jpg")


def test_text_mode_file_object_is_rejected(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hello")
    with open(path) as fh, pytest.raises(ImageDecodeError, match="binary mode"):
        decode_image(fh)


@pytest.mark.parametrize("source", [42, 3.5, [1, 2, 3], {"image": b""}])
def test_unsupported_input_types(source):
    with pytest.raises(ImageDecodeError, match="unsupported image input"):
        decode_image(source)


@pytest.mark.parametrize("source", [None, b"", bytearray(), memoryview(b""), io.BytesIO(b""),
                                    np.zeros((0, 10, 3), np.uint8), np.zeros((10, 0), np.uint8)])
def test_empty_input(source):
    with pytest.raises(EmptyImageError):
        decode_image(source)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(EmptyImageError, match="0 bytes"):
        decode_image(path)


# --- size limits --------------------------------------------------------------------------------
def test_decompression_bomb_is_refused_from_the_header(bomb_png, monkeypatch):
    # Decoding any pixel would be a failure: loading is replaced by a trap.
    def trap(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", trap)
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="900 megapixels, too many to decode safely; the limit "
                                                 "is 40 megapixels"):
        decode_image(bomb_png)
    # Under Pillow's own guard (89 MP) our header check is what stops it, with the dimensions.
    with pytest.raises(ImageTooLargeError, match="9000×9000 pixels; the limit is 40 megapixels"):
        decode_image(png_header_only(9000, 9000))
    with pytest.raises(ImageTooLargeError, match="20000×2000 pixels; the limit is 12000 pixels"):
        decode_image(png_header_only(20_000, 2000))
    assert time.perf_counter() - t0 < 1.0


def test_decompression_bomb_does_not_allocate(bomb_png):
    """In a fresh interpreter, the peak memory stays far below the 900 MB a decode would need."""
    code = (
        "import resource, sys\n"
        "from empathic_agent.perceive.image import decode_image, ImageTooLargeError\n"
        "data = sys.stdin.buffer.read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    decode_image(data)\n"
        "except ImageTooLargeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=bomb_png, capture_output=True, timeout=60,
                         check=True)
    grown_kb = int(out.stdout.decode().strip())
    assert grown_kb < 100_000, f"peak memory grew by {grown_kb} kB"


def test_pillow_bomb_error_is_converted(monkeypatch):
    # Limits raised past Pillow's own guard (2 x MAX_IMAGE_PIXELS): Pillow's error still stops it.
    limits = ImageLimits(max_pixels=10**12, max_side=10**7)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLargeError, match="10000 megapixels, too many to decode safely; "
                                                 "the limit is 89 megapixels"):
        decode_image(png_header_only(100_000, 100_000), limits=limits)
    assert Image.MAX_IMAGE_PIXELS == before


def test_pillow_bomb_warning_is_converted_and_not_leaked():
    # Between MAX_IMAGE_PIXELS and twice that, Pillow only warns: escalated for this call only.
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    limits = ImageLimits(max_pixels=10**12, max_side=10**7)
    filters_before = list(warnings.filters)
    with pytest.raises(ImageTooLargeError, match="too many to decode safely"):
        decode_image(png_header_only(side, side), limits=limits)
    assert warnings.filters == filters_before
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's default, untouched


def test_side_limit():
    data = encode(Image.new("L", (13_000, 20)), "png")
    with pytest.raises(ImageTooLargeError, match="12000 pixels on either side"):
        decode_image(data)
    with pytest.raises(ImageTooLargeError, match="either side"):
        decode_image(np.zeros((20, 13_000), np.uint8))


def test_pixel_limit_for_arrays():
    with pytest.raises(ImageTooLargeError, match="100×100 pixels; the limit is 5000 pixels"):
        decode_image(np.zeros((100, 100, 3), np.uint8), limits=ImageLimits(max_pixels=5000))


def test_over_max_bytes(tmp_path):
    data = encode(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8), "png")
    assert len(data) > 2000
    limits = ImageLimits(max_bytes=2000)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    for source in (data, bytearray(data), memoryview(data), path, str(path), data_url(data)):
        with pytest.raises(ImageTooLargeError, match="limit is 2.0 kB"):
            decode_image(source, limits=limits)


def test_file_object_reads_at_most_max_bytes_plus_one():
    class Recorder(io.BytesIO):
        def __init__(self, data):
            super().__init__(data)
            self.requests = []

        def read(self, size=-1):
            self.requests.append(size)
            return super().read(size)

    fh = Recorder(bytes(50_000))
    with pytest.raises(ImageTooLargeError):
        decode_image(fh, limits=ImageLimits(max_bytes=2000))
    assert fh.requests == [2001]


def test_exactly_max_bytes_is_accepted():
    data = encode(quadrants(), "png")
    decode_image(data, limits=ImageLimits(max_bytes=len(data)))
    with pytest.raises(ImageTooLargeError):
        decode_image(data, limits=ImageLimits(max_bytes=len(data) - 1))


def test_too_small():
    with pytest.raises(ImageTooSmallError, match="10×10 pixels; at least 16 pixels"):
        decode_image(encode(Image.new("RGB", (10, 10)), "png"))
    with pytest.raises(ImageTooSmallError):
        decode_image(np.zeros((8, 100, 3), np.uint8))
    decode_image(np.zeros((16, 16), np.uint8))  # exactly the limit
    decode_image(np.zeros((8, 8), np.uint8), limits=ImageLimits(min_side=8))
    with pytest.raises(ImageTooSmallError):
        decode_image(quadrants(), limits=ImageLimits(min_side=50))


def test_invalid_limits():
    for bad in (dict(max_bytes=0), dict(max_pixels=0), dict(min_side=0), dict(min_side=100, max_side=50),
                dict(work_side=8)):
        with pytest.raises(ValueError):
            ImageLimits(**bad)


# --- downscaling --------------------------------------------------------------------------------
def halves(w: int, h: int) -> np.ndarray:
    a = np.empty((h, w, 3), np.uint8)
    a[:, : w // 2] = RED
    a[:, w // 2:] = BLUE
    return a


@pytest.mark.parametrize("kind", ["png", "jpeg", "array", "pil"])
def test_large_images_are_downscaled_to_work_side(kind):
    a = halves(3000, 2000)
    source = {"png": lambda: encode(a, "png"), "jpeg": lambda: encode(a, "jpeg"),
              "array": lambda: a, "pil": lambda: Image.fromarray(a)}[kind]()
    frame = decode_image(source)
    assert_valid_frame(frame)
    assert (frame.width, frame.height) == (1280, 853)
    assert frame.original_size == (3000, 2000)
    assert frame.scale == pytest.approx(1280 / 3000)
    assert is_red(frame.rgb[400, 100])
    assert frame.rgb[400, 1180, 2] > 200 and frame.rgb[400, 1180, 0] < 60  # the blue half stays blue


def test_portrait_and_custom_work_side():
    frame = decode_image(np.zeros((1000, 500, 3), np.uint8), limits=ImageLimits(work_side=200))
    assert (frame.width, frame.height) == (100, 200) and frame.scale == pytest.approx(0.2)
    small = decode_image(np.zeros((100, 50, 3), np.uint8), limits=ImageLimits(work_side=200))
    assert small.scale == 1.0 and (small.width, small.height) == (50, 100)


def test_large_jpeg_is_decoded_at_reduced_scale(monkeypatch):
    """libjpeg's DCT scaling is used (draft) for big JPEGs and the result still has the target size."""
    from PIL import JpegImagePlugin

    calls = []

    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        calls.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    frame = decode_image(encode(halves(4000, 3000), "jpeg"))
    assert (frame.width, frame.height) == (1280, 960)
    assert frame.original_size == (4000, 3000)
    assert calls and calls[0][1][0] < 4000  # decoded smaller than stored
    assert calls[0][1][0] >= 1280  # never below the target


# --- read-only pixels and gray ------------------------------------------------------------------
def test_pixels_are_read_only():
    frame = decode_image(encode(quadrants(), "png"))
    with pytest.raises(ValueError):
        frame.rgb[0, 0, 0] = 1
    with pytest.raises(ValueError):
        frame.gray()[0, 0] = 1
    with pytest.raises(AttributeError):
        frame.scale = 2.0  # type: ignore[misc]


def test_gray_matches_bt601_and_opencv():
    cv2 = pytest.importorskip("cv2")
    rgb = np.random.default_rng(4).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    frame = decode_image(rgb)
    gray = frame.gray()
    assert gray.shape == (37, 53) and gray.dtype == np.uint8
    assert np.array_equal(gray, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    assert gray is frame.gray()  # cached
    expected = np.rint(rgb.astype(float) @ [0.299, 0.587, 0.114])
    assert np.abs(gray.astype(float) - expected).max() <= 1


def test_gray_of_primary_colours():
    g = decode_image(quadrants()).gray()
    assert (g[0, 0], g[0, -1], g[-1, 0], g[-1, -1]) == (76, 150, 29, 255)


# --- the error family and the import cost -------------------------------------------------------
@pytest.mark.parametrize("cls", [ImageError, EmptyImageError, ImageDecodeError, ImageTooLargeError,
                                 ImageTooSmallError])
def test_every_error_is_an_input_error(cls):
    assert issubclass(cls, ImageError) and issubclass(cls, InputError) and issubclass(cls, ValueError)


def test_all_raised_errors_are_input_errors(tmp_path):
    cases = [None, b"", b"garbage" * 10, np.zeros((5, 5), np.uint8), np.zeros((5, 5), bool),
             tmp_path / "missing.png", 42, "data:image/png;base64,@@@@"]
    for source in cases:
        with pytest.raises(InputError):
            decode_image(source)


def test_public_api():
    assert set(image_module.__all__) == {
        "ImageLimits", "ImageFrame", "ImageSource", "ImageError", "EmptyImageError", "ImageDecodeError",
        "ImageTooLargeError", "ImageTooSmallError", "decode_image"}
    assert ImageLimits() == ImageLimits(max_bytes=10_000_000, max_pixels=40_000_000, max_side=12_000,
                                        min_side=16, work_side=1280)


def test_import_does_not_load_pillow():
    code = ("import sys, empathic_agent.perceive.image as m; "
            "print('PIL' in sys.modules, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    assert out.stdout.decode().split() == ["False", "False"]
