"""Datasets for SuperNet training and SubNet evaluation: standard formats users point at, and offline demo data.

Every dataset comes as deterministic, disjoint ``train`` / ``val`` / ``test`` splits. A sample goes to a split by
the SHA-256 of ``"{seed}:{key}"`` (its file name, index or text block), so splits never depend on file order or the
number of samples, unless the data ships its own split (CIFAR-10's test batch, an image folder's ``train/`` ...).

- images: ``(N, 3, H, W)`` float32 tensors normalised as the space's :class:`~supernet.preprocessing.ImagePreprocessing`
  says (hwpareto's own spaces: [-1, 1]; OFA's ImageNet networks: ImageNet mean/std) and int64 labels; SubNets
  resize them.
- text: byte tokens (vocabulary 256, as the ``gpt`` spaces): UTF-8 text, so ASCII source is character-level;
  :func:`tokenize_text` turns a byte corpus into a Hugging Face tokenizer's ids.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import pickle
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from hwpareto.errors import HwparetoError, InvalidValueError
from supernet.preprocessing import HWPARETO_IMAGES, ImagePreprocessing

__all__ = [
    "DATA_SPECS",
    "SPLITS",
    "Affine",
    "ImageData",
    "ImageSplit",
    "TextData",
    "TextSplit",
    "cifar10_batches",
    "image_folder",
    "load_data",
    "sklearn_digits",
    "split_of",
    "stdlib_corpus",
    "text_file",
    "tokenize_text",
]

SPLITS = ("train", "val", "test")
DATA_SPECS = "digits, digits-affine, stdlib, cifar10:DIR, folder:DIR or text:FILE[,FILE...]"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TEXT_BLOCK = 4096
"""Bytes per text block: the unit a single text file is split by."""


@dataclass(frozen=True, slots=True)
class ImageSplit:
    """Images ``(N, 3, H, W)`` (float32, normalised), labels ``(N,)`` (int64) and each sample's key."""

    images: torch.Tensor
    labels: torch.Tensor
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True, slots=True)
class Affine:
    """Random affine distortions: rotation up to ``rotate`` degrees, zoom factor in ``1 ± scale``, shift up to
    ``shift`` of the image size. Training batches are distorted this way (and resized to each SubNet's input)."""

    rotate: float = 0.0
    scale: float = 0.1
    shift: float = 0.1

    def sample(self, gen: torch.Generator, n: int) -> torch.Tensor:
        """``n`` matrices ``(n, 2, 3)`` for ``F.affine_grid``."""
        u = torch.rand(n, 4, generator=gen) * 2 - 1
        angle = torch.deg2rad(u[:, 0] * self.rotate)
        zoom = 1 + u[:, 1] * self.scale
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = zoom * torch.cos(angle), -zoom * torch.sin(angle)
        theta[:, 1, 0], theta[:, 1, 1] = zoom * torch.sin(angle), zoom * torch.cos(angle)
        theta[:, :, 2] = u[:, 2:] * 2 * self.shift
        return theta


@dataclass(frozen=True, slots=True)
class ImageData:
    """An image-classification dataset in three splits, and the distortions training applies."""

    name: str
    classes: tuple[str, ...]
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    description: str
    augment: Affine = Affine()

    def split(self, name: str) -> ImageSplit:
        """The split called ``name`` (train, val or test)."""
        return _pick(self, name)


@dataclass(frozen=True, slots=True)
class TextSplit:
    """One token stream (int64; bytes in [0, 256) unless tokenized) made of the documents or blocks in ``keys``."""

    tokens: torch.Tensor
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.tokens.numel())


@dataclass(frozen=True, slots=True)
class TextData:
    """A language-modelling corpus in three splits: bytes (``tokenizer`` "bytes", vocabulary 256) unless
    :func:`tokenize_text` made it another tokenizer's ids."""

    name: str
    train: TextSplit
    val: TextSplit
    test: TextSplit
    description: str
    vocab_size: int = 256
    tokenizer: str = "bytes"

    def split(self, name: str) -> TextSplit:
        """The split called ``name`` (train, val or test)."""
        return _pick(self, name)


def _pick(data: ImageData | TextData, name: str) -> Any:
    if name not in SPLITS:
        raise InvalidValueError("split", "one of " + ", ".join(SPLITS), name)
    return getattr(data, name)


def split_of(key: str, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> str:
    """The split (train, val or test) of the sample called ``key``: a pure function of ``seed`` and ``key``."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2.0**64
    total = sum(fractions)
    if u * total < fractions[0]:
        return "train"
    return "val" if u * total < fractions[0] + fractions[1] else "test"


# ---------------------------------------------------------------------------------------------------- images
def _image_splits(
    images: torch.Tensor, labels: torch.Tensor, keys: Sequence[str], assigned: Sequence[str]
) -> dict[str, ImageSplit]:
    out: dict[str, ImageSplit] = {}
    for name in SPLITS:
        index = [i for i, s in enumerate(assigned) if s == name]
        if not index:
            raise HwparetoError(f"dataset: the {name} split is empty ({len(keys)} samples in all)")
        ix = torch.tensor(index, dtype=torch.int64)
        out[name] = ImageSplit(images[ix].contiguous(), labels[ix].contiguous(), tuple(keys[i] for i in index))
    return out


DIGITS_AFFINE = Affine(rotate=30.0, scale=0.2, shift=0.15)
"""The distortions of ``digits-affine``: rotation ±30°, zoom 0.8-1.2, shift ±15 %."""


def sklearn_digits(seed: int = 0, affine: bool = False, copies: int = 4, resolution: int = 32) -> ImageData:
    """scikit-learn's 1,797 handwritten digits (8×8, grey levels 0-16; shipped inside scikit-learn, no download).

    Split 60/20/20 by sample index; grey levels scaled to [-1, 1] and repeated over 3 channels. Plain digits are
    easy for any SubNet (all score 96.8-100 %); ``affine`` makes it harder: training distorts every batch with
    :data:`DIGITS_AFFINE`, and val/test hold ``copies`` fixed distortions of each of their images (drawn from
    ``seed``, rendered at ``resolution`` px).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 8.0 - 1.0)[:, None].repeat(1, 3, 1, 1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    keys = [f"digits/{i}" for i in range(len(y))]
    splits = _image_splits(x, y, keys, [split_of(k, seed, (0.6, 0.2, 0.2)) for k in keys])
    classes = tuple(str(c) for c in range(10))
    if not affine:
        return ImageData(
            "digits",
            classes,
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            description=f"scikit-learn digits, 8x8 grey, split 60/20/20 by index hash (seed {seed})",
        )
    gen = torch.Generator().manual_seed(seed)
    for name in ("val", "test"):
        part = splits[name]
        theta = DIGITS_AFFINE.sample(gen, copies * len(part))
        images = part.images.repeat_interleave(copies, 0)
        grid = torch.nn.functional.affine_grid(theta, [len(images), 3, resolution, resolution], align_corners=False)
        distorted = torch.nn.functional.grid_sample(images + 1, grid, align_corners=False) - 1  # black outside
        splits[name] = ImageSplit(
            distorted,
            part.labels.repeat_interleave(copies),
            tuple(f"{k}@{j}" for k in part.keys for j in range(copies)),
        )
    return ImageData(
        "digits-affine",
        classes,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        augment=DIGITS_AFFINE,
        description=f"scikit-learn digits under random affine distortions (rotation +-30 deg, zoom "
        f"0.8-1.2, shift +-15 %), split 60/20/20 by index hash (seed {seed}); val/test: {copies} fixed "
        f"distortions per image at {resolution} px",
    )


def _to_tensor(pixels: np.ndarray, preprocessing: ImagePreprocessing = HWPARETO_IMAGES) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` to float32 ``(N, 3, H, W)``, normalised with the preprocessing's mean and std."""
    if preprocessing == HWPARETO_IMAGES:  # (x / 255 - 0.5) / 0.5, as every hwpareto table was computed
        return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()
    mean = torch.tensor(preprocessing.mean_rgb).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std_rgb).view(1, 3, 1, 1)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0).sub_(mean).div_(std).contiguous()


def image_folder(
    path: str | Path, resolution: int = 32, seed: int = 0, preprocessing: ImagePreprocessing = HWPARETO_IMAGES
) -> ImageData:
    """Images in ``path/<class>/<file>`` (ImageNet layout) at ``resolution``: the centre square of side
    ``resolution / preprocessing.resize_px(resolution)`` of the shorter side (all of it for hwpareto's spaces,
    0.875 for OFA's: its resize-then-centre-crop), resized bilinearly, normalised as ``preprocessing`` says.

    When ``path`` holds ``train/``, ``val/`` and ``test/`` folders (each in that layout) they are the splits;
    otherwise files are split 70/15/15 by the hash of their path relative to ``path``.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise InvalidValueError("image folder", "a directory of class folders", str(root))
    presplit = all((root / s).is_dir() for s in SPLITS)
    bases = [root / s for s in SPLITS] if presplit else [root]
    classes = sorted(d.name for d in bases[0].iterdir() if d.is_dir())
    if not classes:
        raise InvalidValueError(f"image folder {bases[0]}", "one sub-folder per class", "no sub-folders")
    files: list[tuple[Path, int, str]] = []
    for base in bases:
        for label, cls in enumerate(classes):
            for f in sorted((base / cls).rglob("*")) if (base / cls).is_dir() else []:
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append((f, label, f.relative_to(root).as_posix()))
    pixels = np.empty((len(files), resolution, resolution, 3), dtype=np.uint8)
    for i, (f, _, _) in enumerate(files):
        try:
            with Image.open(f) as im:
                rgb = im.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise HwparetoError(f"image {f}: unreadable ({exc})") from None
        side = round(min(rgb.size) * resolution / preprocessing.resize_px(resolution))
        left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
        square = rgb.crop((left, top, left + side, top + side))
        pixels[i] = np.asarray(square.resize((resolution, resolution), Image.Resampling.BILINEAR))
    keys = [k for _, _, k in files]
    assigned = [k.split("/", 1)[0] if presplit else split_of(k, seed) for k in keys]
    labels = torch.tensor([lab for _, lab, _ in files], dtype=torch.int64)
    splits = _image_splits(_to_tensor(pixels, preprocessing), labels, keys, assigned)
    how = "its train/val/test folders" if presplit else f"70/15/15 by file-path hash (seed {seed})"
    return ImageData(
        f"folder:{root.name}",
        tuple(classes),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        description=f"image folder {root} ({len(files)} images, {len(classes)} classes) at "
        f"{resolution} px, split by {how}",
    )


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy 2
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR-10's official python batches are pickles (dicts of bytes, lists and one numpy array). This unpickler
    resolves exactly the globals such a file needs and refuses every other one, so a crafted file cannot run code
    (``os.system``, ``builtins.eval`` ...) while loading: numpy's ``_reconstruct``, ``ndarray`` and ``dtype`` (to
    rebuild the array) and ``_codecs.encode`` (a pure function Python 3 uses for bytes in protocol-2 pickles)."""

    ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise HwparetoError(
                f"CIFAR batch refers to {module}.{name}: only numpy arrays, dicts, lists and bytes may be loaded "
                "(refused, nothing executed)"
            )
        if module == "_codecs":
            return codecs.encode
        return {"_reconstruct": _numpy_reconstruct, "ndarray": lambda: np.ndarray, "dtype": lambda: np.dtype}[name]()


def _cifar_batch(path: Path) -> tuple[np.ndarray, list[int], list[str]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HwparetoError(f"CIFAR batch {path}: cannot read ({exc.strerror})") from None
    try:
        doc = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except HwparetoError as exc:
        raise HwparetoError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise HwparetoError(f"CIFAR batch {path}: not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidValueError(f"CIFAR batch {path}", "a dict", type(doc).__name__)
    data, labels = doc.get(b"data"), doc.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise InvalidValueError(
            f"CIFAR batch {path} data", "a uint8 array of N x 3072", getattr(data, "shape", type(data).__name__)
        )
    if (
        not isinstance(labels, list)
        or len(labels) != len(data)
        or not all(isinstance(v, int) and 0 <= v < 10 for v in labels)
    ):
        raise InvalidValueError(f"CIFAR batch {path} labels", f"{len(data)} integers in [0, 10)", "other")
    names = doc.get(b"filenames")
    files = [n.decode() if isinstance(n, bytes) else str(n) for n in names] if isinstance(names, list) else []
    if len(files) != len(data):
        files = [f"{path.name}/{i}" for i in range(len(data))]
    return data, labels, files


def cifar10_batches(path: str | Path, seed: int = 0, preprocessing: ImagePreprocessing = HWPARETO_IMAGES) -> ImageData:
    """CIFAR-10 in its official python format (the ``cifar-10-batches-py`` folder, loaded without executing any
    pickle code, see :class:`_CifarUnpickler`): ``test_batch`` is the test split, ``data_batch_1..5`` are split
    85/15 into train and val by the hash of each image's file name."""
    root = Path(path)
    train_files = sorted(root.glob("data_batch_*"))
    if not train_files or not (root / "test_batch").is_file():
        raise InvalidValueError("CIFAR-10 folder", "data_batch_1..5 and test_batch (cifar-10-batches-py)", str(root))
    parts = [_cifar_batch(f) for f in [*train_files, root / "test_batch"]]
    data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = torch.tensor([v for p in parts for v in p[1]], dtype=torch.int64)
    keys = [k for p in parts for k in p[2]]
    n_test = len(parts[-1][0])
    assigned = [split_of(k, seed, (0.85, 0.15, 0.0)) for k in keys[: len(keys) - n_test]] + ["test"] * n_test
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    splits = _image_splits(_to_tensor(np.ascontiguousarray(data), preprocessing), labels, keys, assigned)
    return ImageData(
        "cifar10",
        classes,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        description=f"CIFAR-10 python batches in {root}: test_batch as test, data batches split 85/15 "
        f"into train/val by file-name hash (seed {seed})",
    )


# ---------------------------------------------------------------------------------------------------- text
def _text_splits(docs: Iterable[tuple[str, bytes]], seed: int) -> dict[str, TextSplit]:
    parts: dict[str, list[tuple[str, bytes]]] = {s: [] for s in SPLITS}
    for key, body in docs:
        parts[split_of(key, seed)].append((key, body))
    out: dict[str, TextSplit] = {}
    for name, items in parts.items():
        stream = b"".join(body for _, body in items)
        if len(stream) < 2:
            raise HwparetoError(f"text corpus: the {name} split is empty; give more text")
        tokens = torch.frombuffer(bytearray(stream), dtype=torch.uint8).to(torch.int64)
        out[name] = TextSplit(tokens, tuple(k for k, _ in items))
    return out


def _blocks(body: bytes) -> list[bytes]:
    """``body`` cut into blocks of at most :data:`TEXT_BLOCK` bytes, each ending on a UTF-8 character boundary."""
    out, i = [], 0
    while i < len(body):
        j = min(len(body), i + TEXT_BLOCK)
        while i + 1 < j < len(body) and (body[j] & 0xC0) == 0x80:  # a continuation byte starts the next block
            j -= 1
        out.append(body[i:j])
        i = j
    return out


def _read_text(path: Path) -> bytes:
    """The bytes of a non-empty UTF-8 text file (no NUL bytes), else a one-line error."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise HwparetoError(f"text file {path}: cannot read ({exc.strerror})") from None
    if not body:
        raise InvalidValueError(f"text file {path}", "a non-empty UTF-8 text file", "0 bytes")
    nul = body.find(b"\0")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidValueError(
            f"text file {path}", "UTF-8 text", f"binary data (invalid UTF-8 at byte {exc.start:,})"
        ) from None
    if nul >= 0:
        raise InvalidValueError(f"text file {path}", "UTF-8 text", f"binary data (a NUL byte at byte {nul:,})")
    return body


def text_file(paths: str | Path | Sequence[str | Path], seed: int = 0) -> TextData:
    """Byte-level corpus from UTF-8 text files, cut into blocks of about 4,096 bytes (on character boundaries)
    split 70/15/15 by ``file#block`` hash. A missing, empty or binary file is a one-line error."""
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    docs: list[tuple[str, bytes]] = []
    for f in files:
        docs += [(f"{f.name}#{i}", block) for i, block in enumerate(_blocks(_read_text(f)))]
    splits = _text_splits(docs, seed)
    names = ", ".join(f.name for f in files)
    return TextData(
        f"text:{files[0].stem}",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        description=f"text {names}: {TEXT_BLOCK}-byte blocks split 70/15/15 by hash (seed {seed})",
    )


def tokenize_text(data: TextData, tokenizer: Any) -> TextData:
    """A byte corpus re-tokenized: each split's UTF-8 text through ``tokenizer`` (a ``transformers`` tokenizer; no
    special tokens added), vocabulary ``len(tokenizer)``."""
    if data.tokenizer != "bytes":
        raise InvalidValueError(f"corpus {data.name}", "a byte corpus", f"tokenized by {data.tokenizer}")
    splits: dict[str, TextSplit] = {}
    for name in SPLITS:
        part = data.split(name)
        text = part.tokens.to(torch.uint8).numpy().tobytes().decode("utf-8", errors="replace")
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        splits[name] = TextSplit(torch.tensor(ids, dtype=torch.int64), part.keys)
    label = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    return TextData(
        data.name,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        description=f"{data.description}; tokenized by {label} ({len(tokenizer):,} tokens)",
        vocab_size=len(tokenizer),
        tokenizer=label,
    )


def stdlib_corpus(seed: int = 0) -> TextData:
    """The Python standard library's own top-level ``*.py`` files (sorted; no packages, so no tests), split 70/15/15
    by file name hash. The text is that of the running Python: other versions give slightly different corpora."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"))
    if not files:
        raise HwparetoError(f"Python standard library {root}: no .py files (a zip-only install?)")
    splits = _text_splits(((f.name, f.read_bytes()) for f in files), seed)
    return TextData(
        "stdlib",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        description=f"Python {sysconfig.get_python_version()} standard library: {len(files)} top-level "
        f".py files in {root}, bytes, split 70/15/15 by file-name hash (seed {seed})",
    )


def load_data(
    spec: str, *, resolution: int = 32, seed: int = 0, preprocessing: ImagePreprocessing | None = None
) -> ImageData | TextData:
    """Dataset from a command-line spec: ``digits``, ``digits-affine``, ``stdlib``, ``cifar10:DIR``, ``folder:DIR``
    or ``text:FILE[,FILE...]`` (images of ``folder`` and held-out ``digits-affine`` stored at ``resolution`` px;
    ``folder`` and ``cifar10`` images normalised as ``preprocessing`` says, default hwpareto's [-1, 1])."""
    preprocessing = preprocessing or HWPARETO_IMAGES
    kind, _, arg = spec.partition(":")
    if spec in ("digits", "digits-affine"):
        return sklearn_digits(seed, affine=spec == "digits-affine", resolution=resolution)
    if spec == "stdlib":
        return stdlib_corpus(seed)
    if kind == "cifar10" and arg:
        return cifar10_batches(arg, seed, preprocessing)
    if kind == "folder" and arg:
        return image_folder(arg, resolution, seed, preprocessing)
    if kind == "text" and arg:
        return text_file(arg.split(","), seed)
    raise InvalidValueError("--data", DATA_SPECS, spec)
