"""dlib's face-descriptor ResNet run by torch: the same weights and arithmetic, about seven times less CPU.

dlib's own network code runs without BLAS in the dlib-bin wheel (0.14 s per face on a 2-core CPU, most of a
likeness check); torch's convolutions take ~0.02 s. The weights are read from the model file that
face_recognition_models ships (dlib's serialization: layer records innermost first, tensors as little-endian
float32), into the network dlib's face recognition example declares:

    fc_no_bias<128> ∘ avg_pool_everything ∘ 4 levels of residual blocks (256, 256×3, 128×3, 64×4, 32×3)
    ∘ max_pool<3,3,2,2> ∘ relu ∘ affine ∘ con<32,7,7,2,2> ∘ input_rgb_image_sized<150>

Two dlib semantics matter and are kept: a residual sum of tensors of different sizes pads the smaller with zeros
(at the end of each axis), and the input is (pixel - channel mean) / 256. tests/gpu_agent/test_face_net.py
compares the descriptors with dlib's on real faces.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_RECORD = re.compile(
    rb"\x01[\x04-\x15](con_4|affine_|relu_|max_pool_2|avg_pool_2|add_prev_|fc_2|input_rgb_image_sized)"
)
_LEVELS = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
"""(channels, blocks, first block halves the size) from the input side, as dlib's example declares them."""


class FaceNetError(ValueError):
    """The model file is not the network this module knows."""


class _Reader:
    """dlib's serialization primitives over a byte string."""

    def __init__(self, data: bytes, at: int) -> None:
        self.data, self.at = data, at

    def integer(self) -> int:
        control = self.data[self.at]
        size, negative = control & 0x0F, bool(control & 0x80)
        value = int.from_bytes(self.data[self.at + 1 : self.at + 1 + size], "little")
        self.at += 1 + size
        return -value if negative else value

    def real(self) -> float:
        mantissa = self.integer()
        return float(mantissa) * 2.0 ** self.integer()

    def text(self) -> str:
        size = self.integer()
        text = self.data[self.at : self.at + size].decode("ascii", errors="replace")
        self.at += size
        return text

    def tensor(self) -> np.ndarray:
        if self.integer() != 2:
            raise FaceNetError("unknown tensor version")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        if count <= 0 or self.at + 4 * count > len(self.data):
            raise FaceNetError("a tensor runs past the end of the file")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.at)
        self.at += 4 * count
        return values.reshape(shape)


@dataclass(frozen=True)
class _Conv:
    weight: np.ndarray  # (out, in, kh, kw)
    bias: np.ndarray
    stride: int
    padding: int


def _read_layers(data: bytes) -> tuple[tuple[float, float, float], list[_Conv], list[np.ndarray], np.ndarray]:
    """(input channel means, convolutions, affines as (2, channels), fc weights (in, out)) in forward order."""
    means: tuple[float, float, float] | None = None
    convs: list[_Conv] = []
    affines: list[np.ndarray] = []
    fc: np.ndarray | None = None
    at = 0
    while (match := _RECORD.search(data, at)) is not None:
        reader = _Reader(data, match.start())
        name = reader.text()
        if name == "input_rgb_image_sized":
            means = (reader.real(), reader.real(), reader.real())
        elif name == "con_4":
            params = reader.tensor().reshape(-1)
            filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.integer() for _ in range(7))
            if rows != cols or stride_y != stride_x or pad_y != pad_x:
                raise FaceNetError("non-square convolution")
            inputs = (params.size - filters) // (filters * rows * cols)
            weight = params[: filters * inputs * rows * cols].reshape(filters, inputs, rows, cols)
            convs.append(_Conv(weight, params[-filters:], stride_y, pad_y))
        elif name == "affine_":
            affines.append(reader.tensor().reshape(2, -1))  # gamma then beta
        elif name == "fc_2":
            outputs, inputs = reader.integer(), reader.integer()
            fc = reader.tensor().reshape(inputs, outputs)
        at = max(reader.at, match.end())  # past the record's tensors: their bytes are never searched
    if means is None or fc is None or len(convs) != 29 or len(affines) != 29:
        raise FaceNetError(f"expected dlib's face ResNet (29 convolutions), found {len(convs)}")
    return means, convs, affines, fc


class FaceNet:
    """The 128-d descriptor of aligned 150 px face chips (``dlib.get_face_chip`` output)."""

    def __init__(self, path: Path) -> None:
        import torch

        means, convs, affines, fc = _read_layers(path.read_bytes())
        self._torch = torch
        self._mean = torch.tensor(means, dtype=torch.float32).view(1, 3, 1, 1)
        self._convs = [
            (torch.from_numpy(c.weight.copy()), torch.from_numpy(c.bias.copy()), c.stride, c.padding)
            for c in convs
        ]
        self._affines = [
            (torch.from_numpy(a[0].copy()).view(1, -1, 1, 1), torch.from_numpy(a[1].copy()).view(1, -1, 1, 1))
            for a in affines
        ]
        self._fc = torch.from_numpy(fc.copy())
        self._lock = threading.Lock()
        expected = [32] + [c for c, blocks, _ in _LEVELS for _ in range(blocks * 2)]
        if [int(w.shape[0]) for w, *_ in self._convs] != expected or tuple(self._fc.shape) != (256, 128):
            raise FaceNetError("the layers do not have the face ResNet's shapes")

    def _layer(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """con → affine of layer ``index``."""
        weight, bias, stride, padding = self._convs[index]
        gamma, beta = self._affines[index]
        return self._torch.nn.functional.conv2d(x, weight, bias, stride, padding) * gamma + beta

    @staticmethod
    def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """dlib's add of tensors of different sizes: the missing elements are zeros, at the end of each axis."""
        import torch.nn.functional as F

        shape = [max(x, y) for x, y in zip(a.shape, b.shape, strict=True)]

        def grow(t: torch.Tensor) -> torch.Tensor:
            pads = [0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1]]
            return F.pad(t, pads) if any(pads) else t

        return grow(a) + grow(b)

    def describe(self, chips: list[np.ndarray]) -> np.ndarray:
        """Descriptors (n, 128) of 150×150 RGB uint8 chips, on one CPU thread: a network this small gains little
        from more, and idle threads spinning between its layers cost more CPU than they save (the agent scores
        between renders, so the process's own thread count is put back at once)."""
        torch = self._torch
        with self._lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self._forward(chips)
            finally:
                torch.set_num_threads(threads)

    def _forward(self, chips: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        F = torch.nn.functional
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
            x = (x - self._mean) / 256.0
            x = F.max_pool2d(F.relu(self._layer(x, 0)), 3, 2)
            index = 1
            for _channels, blocks, down in _LEVELS:
                for block in range(blocks):
                    y = self._layer(F.relu(self._layer(x, index)), index + 1)
                    index += 2
                    skip = F.avg_pool2d(x, 2, 2) if down and block == 0 else x
                    x = F.relu(self._add(skip, y))
            x = x.mean(dim=(2, 3)) @ self._fc
        return x.double().numpy()


_net: FaceNet | None = None
_net_lock = threading.Lock()


def face_net(path: Path) -> FaceNet | None:
    """The process-wide torch face net, or None when torch is not installed (the bot's image): dlib's own then."""
    global _net  # a lazy process-wide cache
    if _net is None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return None
        with _net_lock:
            if _net is None:
                _net = FaceNet(path)
    return _net
