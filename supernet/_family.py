"""Model families: how a family of spaces ships, loads, checks and trains its SubNets.

Bundles (``pareto``: export, load, ``verify-bundle``) and training (``supernet.training``, the CLI) call the hooks
of ``space.family`` instead of asking which family a space is, so a new family (or, later, a deployment runtime)
plugs in by overriding hooks, never by a branch in the core. :class:`ModelFamily` itself is the plain PyTorch
family every space gets by default: ``weights.safetensors`` of the SubNet's state dict, an ONNX graph
``input → output`` with a dynamic batch, SuperNet weights from safetensors checkpoints, data as the space's dummy
input says. ``supernet.llama`` overrides it for Hugging Face model folders.

Also here: :class:`SuperNet`, the one protocol every SuperNet follows (as each of OFA's dynamic layers owns
``get_active_subnet``): ``set_active(config)`` with the space's :class:`~supernet.SubNetConfig`, then ``forward``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from hwpareto.errors import CapabilityError
from supernet._types import SubNetConfig

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ONNX_DATA_FILE",
    "ONNX_FILE",
    "TORCH",
    "CopiedFile",
    "FamilySpace",
    "ModelFamily",
    "OnnxGraph",
    "SuperNet",
    "save_checkpoint",
]

ONNX_FILE = "model.onnx"
ONNX_DATA_FILE = "model.onnx.data"
"""The weights of an ONNX graph over protobuf's 2 GB limit (an LLM's), in one file beside it."""


class FamilySpace(Protocol):
    """What the hooks read of every space (a :class:`~supernet.SearchSpace`; kept structural so this module sits
    below ``supernet._space``, which gives every space its family)."""

    name: str

    def dummy_input(self, config: SubNetConfig, batch: int = 1, seed: int = 0) -> Any:
        """An input of ``batch`` samples for the SubNet ``config``."""


S = TypeVar("S", bound=FamilySpace)


@runtime_checkable
class SuperNet(Protocol):
    """A weight-shared SuperNet: :meth:`set_active` selects the SubNet ``config`` that ``forward`` then runs."""

    def set_active(self, config: SubNetConfig) -> None:
        """Make ``forward`` run the SubNet ``config`` (a config of the space that built this SuperNet)."""


@dataclass(frozen=True, slots=True)
class CopiedFile:
    """A file of the SuperNet's own folder a bundle carries: its contents, and whether others could not read it
    (a bundle then keeps it private)."""

    data: bytes
    private: bool


@dataclass(frozen=True, slots=True)
class OnnxGraph:
    """What a bundle's ONNX graph is traced from: the module, an example input, the names of its input and output
    and their dynamic axes."""

    module: Any
    example: Any
    input_name: str = "input"
    output_name: str = "output"
    axes: Mapping[int, str] | None = None


class ModelFamily:
    """The hooks of one family of spaces (the defaults: a plain PyTorch SubNet; see the module docstring).

    Bundles: :attr:`model_folder` (None: the SubNet's state dict as ``weights.safetensors``; else the folder
    :meth:`save_subnet` writes and :meth:`load_subnet` reads, recorded in ``config.json`` under :attr:`bundle_key`),
    :meth:`weights_folder` (the SuperNet's weights the space carries itself, instead of a checkpoint),
    :meth:`copied_files`, :meth:`provenance`, :meth:`portable_document`, :meth:`onnx_graph`,
    :meth:`verify_inputs`, :meth:`reload_plain`, :meth:`readme`. Training: :meth:`training_task`,
    :meth:`save_trained`.
    """

    name: ClassVar[str] = "torch"
    model_folder: ClassVar[str | None] = None
    bundle_key: ClassVar[str | None] = None
    checkpoints: ClassVar[bool] = True
    """Whether trained SuperNets are safetensors checkpoints (``--checkpoint``); False: a model folder, which the
    space registered from it carries (:meth:`weights_folder`)."""

    # ------------------------------------------------------------------ the SuperNet's weights
    def weights_folder(self, space: FamilySpace) -> Path | None:
        """The folder holding the SuperNet weights ``space`` carries (None: they come from a checkpoint)."""
        return None

    def folder_sha256(self, space: FamilySpace) -> str | None:
        """The weights hash recorded for :meth:`weights_folder` (None when the space carries none)."""
        return None

    def hash_folder(self, folder: Path) -> str | None:
        """The weights hash of a model folder on disk, as :meth:`folder_sha256` records it (None: not one)."""
        return None

    def hash_copied(self, folder: Path) -> dict[str, Any] | None:
        """SHA-256 of each file :meth:`copied_files` would copy from ``folder`` (None when they cannot be read)."""
        return None

    def on_folder(self, space: S, folder: Path, recorded: Mapping[str, Any], where: str) -> S:
        """``space`` rebuilt on the model ``folder`` a bundle's SuperNet was found in (``recorded``: its
        ``supernet`` section; ``where`` names it in errors)."""
        raise CapabilityError(f"space {space.name!r} has no model folder")

    # ------------------------------------------------------------------ bundles
    def copied_files(self, space: FamilySpace) -> dict[str, CopiedFile]:
        """Files of :meth:`weights_folder` a bundle's :attr:`model_folder` carries, read (and checked) before
        anything is written; name → contents."""
        return {}

    def provenance(self, space: FamilySpace) -> dict[str, Any]:
        """What a bundle's ``supernet`` section records beyond the checkpoint (a model folder's name and hash)."""
        return {}

    def portable_document(self, space: FamilySpace, doc: dict[str, Any]) -> dict[str, Any]:
        """The stored-space document ``doc`` as a bundle carries it (nothing of this machine, such as a path)."""
        return doc

    def save_subnet(self, module: nn.Module, folder: Path, copied: Mapping[str, CopiedFile]) -> dict[str, Any]:
        """Write the SubNet ``module`` and the ``copied`` files into ``folder`` (:attr:`model_folder`); what
        ``config.json`` records under :attr:`bundle_key`."""
        raise CapabilityError(f"model family {self.name} writes weights.safetensors, not a model folder")

    def load_subnet(self, space: FamilySpace, folder: Path, config: SubNetConfig, where: str) -> nn.Module:
        """The SubNet ``config`` from a bundle's :attr:`model_folder`, its tensors checked against ``config``."""
        raise CapabilityError(f"model family {self.name} reads weights.safetensors, not a model folder")

    def subnet_file(self, name: str) -> bool:
        """Whether ``name`` in :attr:`model_folder` is a file :meth:`save_subnet` writes (not a copied one)."""
        return False

    def reload_plain(self, folder: Path) -> nn.Module | None:
        """The bundle's :attr:`model_folder` loaded by its ecosystem's own loader, when it is in that plain form
        (``verify-bundle`` compares it too); None otherwise."""
        return None

    def onnx_graph(self, module: nn.Module, example: Any) -> OnnxGraph:
        """What the bundle's ONNX graph is traced from (``example``: the space's dummy input at batch 2)."""
        return OnnxGraph(module, example, axes={0: "batch"})

    def verify_inputs(self, space: FamilySpace, config: SubNetConfig) -> list[Any]:
        """What a bundle is verified on: the space's dummy input at batch 3 (seed 1) and batch 1 (seed 2), neither
        the export's trace batch of 2 (the batch axis is dynamic)."""
        return [space.dummy_input(config, batch=3, seed=1), space.dummy_input(config, batch=1, seed=2)]

    def readme(
        self, space: FamilySpace, config: SubNetConfig, doc: Mapping[str, Any], files: Mapping[str, str]
    ) -> str | None:
        """A bundle's README (None: none is written)."""
        return None

    # ------------------------------------------------------------------ training
    def training_task(self, space: FamilySpace, data: Any, device: Any, seq_len: int | None) -> Any:
        """The family's own way to feed text ``data`` to ``space`` (a ``supernet.training`` task), or None for the
        default (bytes as tokens)."""
        return None

    def save_trained(self, space: FamilySpace, supernet: nn.Module, out: Path, meta: Mapping[str, Any]) -> None:
        """Write a trained SuperNet to ``out``: a safetensors checkpoint (:attr:`checkpoints`), else the family's
        model folder."""
        save_checkpoint(supernet, out, meta)


def save_checkpoint(supernet: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None) -> None:
    """The SuperNet's state dict as safetensors (loadable by ``pareto``'s ``load_supernet``; never a pickle), written
    whole or not at all (a full disk is one line naming ``path``)."""
    from supernet._files import save_tensors

    state = {k: v.detach().cpu().contiguous() for k, v in supernet.state_dict().items()}
    save_tensors(path, state, "checkpoint", {k: str(v) for k, v in (metadata or {}).items()})


TORCH = ModelFamily()
"""The plain PyTorch family (:attr:`supernet.SearchSpace.family`'s default)."""
