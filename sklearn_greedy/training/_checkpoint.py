"""Per-piece checkpoints of a long fit: each finished layer (block) on disk at once.

Greedy training is made of finished pieces: once layer ``j`` is trained it never changes.
With ``checkpoint_dir`` set, an estimator writes each piece there as soon as it is done
(:meth:`CheckpointStore.save`), and a later ``fit`` with the same directory, data and
parameters reads them back (:meth:`CheckpointStore.load`) and trains only what is missing.

A checkpoint file is safe by construction:

- written atomically (a temporary file in the same directory, fsync, rename, fsync of the
  directory), so a kill during a write leaves the previous state;
- self-describing: a JSON header names the fit it belongs to (its *fingerprint*: the
  parameters that shape the network and its training, the classes, the data's size and a
  cheap hash of it, the library and torch versions); a file of another fit is refused
  with an error naming what differs;
- checksummed (SHA-256 over header and tensors): a truncated or altered file is refused;
- loaded with ``torch.load(weights_only=True)`` only: tensors and plain containers, never
  code, so a directory from elsewhere cannot run anything.

File layout: ``MAGIC``, the hex digest and a newline, the header (one line of JSON) and a
newline, then the tensors as ``torch.save`` wrote them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch

MAGIC = b"SKLEARN-GREEDY-CHECKPOINT 1\n"
FORMAT = 1
# Rows of X hashed for the data fingerprint: cheap on any size, yet a different data
# set, a reordering or a rescaling is all but certain to change it.
_HASHED_ROWS = 64


def piece_name(index: int) -> str:
    return f"piece-{index:04d}.ckpt"


def canonical(value):
    """A JSON value standing for ``value``, equal for equal parameters."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return canonical(value.tolist())
    if isinstance(value, dict):
        return [
            [repr(k), canonical(v)] for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))
        ]
    if isinstance(value, (os.PathLike, torch.device)):
        return str(value)
    return repr(value)


def data_digest(*arrays) -> str:
    """A short hash of the data: shapes, dtypes and ``_HASHED_ROWS`` evenly spaced rows
    of each array (tensors, arrays, memmaps, map-style data sets: their items), whole
    for 1-D arrays (labels, weights)."""
    h = hashlib.sha256()
    for array in arrays:
        if array is None:
            h.update(b"none;")
            continue
        n = len(array)
        h.update(f"{n};".encode())
        rows = np.unique(np.linspace(0, n - 1, num=min(n, _HASHED_ROWS)).astype(np.int64))
        if isinstance(array, (np.ndarray, torch.Tensor)) and array.ndim == 1:
            rows = np.arange(n)
        for sample in _rows(array, rows):
            h.update(np.ascontiguousarray(sample).tobytes())
            h.update(f"{sample.dtype}{sample.shape};".encode())
    return h.hexdigest()[:32]


def _rows(array, rows):
    if isinstance(array, torch.Tensor):
        yield array[torch.as_tensor(rows, device=array.device)].detach().cpu().numpy()
    elif isinstance(array, np.ndarray):
        yield np.asarray(array[rows])
    else:  # a data set: its items, images and labels alike
        for i in rows:
            item = array[int(i)]
            for part in item if isinstance(item, (tuple, list)) else (item,):
                if isinstance(part, torch.Tensor):
                    yield part.detach().cpu().numpy()
                else:
                    yield np.asarray(part)


def environment() -> dict:
    """The versions a checkpoint is tied to (its tensors' meaning may change with them)."""
    from .. import __version__

    return {"sklearn_greedy": __version__, "torch": torch.__version__.split("+")[0]}


def estimator_fingerprint(estimator, *, ignore: tuple[str, ...]) -> dict:
    """The estimator's parameters, canonical, but those that do not change what a piece
    learns (``ignore``) and ``random_state`` when it is not an integer (the seed drawn
    for the first run is stored with the pieces and reused)."""
    params = estimator.get_params(deep=False)
    fingerprint = {}
    for name, value in sorted(params.items()):
        if name in ignore or name == "checkpoint_dir":
            continue
        if name == "random_state" and not isinstance(value, (int, np.integer)):
            value = "drawn" if value is None else "RandomState"
        fingerprint[f"param {name}"] = canonical(value)
    return fingerprint


class CheckpointStore:
    """The checkpoint files of one fit in ``directory``.

    Parameters
    ----------
    directory : str or path-like
        Where the pieces are written; created when missing.
    fingerprint : dict
        What the fit is (JSON values): a file whose fingerprint differs is refused.
    kind : str
        What a piece is ("layer", "block"), for messages.
    write : bool, default=True
        False for the ranks of a data-parallel fit other than 0: they read, never write.

    Examples
    --------
    >>> import tempfile, torch
    >>> from sklearn_greedy.training._checkpoint import CheckpointStore
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = CheckpointStore(d, {"param lr": 0.1}, kind="layer")
    ...     store.check_writable()
    ...     store.save(0, {"weight": torch.ones(2)}, {"score": 0.5}, seed=7)
    ...     pieces, seed = store.load()
    >>> len(pieces), pieces[0].meta["score"], seed
    (1, 0.5, 7)
    """

    def __init__(self, directory, fingerprint: dict, *, kind: str = "layer", write=True):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.kind = kind
        self.write = write

    # -- before training -----------------------------------------------------------------
    def check_writable(self) -> None:
        """Create the directory and write a probe file in it, so that a directory that
        cannot hold the pieces fails the fit before any training."""
        if not self.write:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".probe-") as f:
                f.write(b"probe")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise ValueError(
                f"checkpoint_dir={str(self.directory)!r} cannot be written ({exc}); give a "
                "writable directory, or checkpoint_dir=None."
            ) from exc

    # -- reading ---------------------------------------------------------------------------
    def load(self) -> tuple[list[Piece], int | None]:
        """The consecutive pieces ``0, 1, ...`` found, and the seed of the fit that wrote
        them (None when there are none).

        Raises
        ------
        ValueError
            When a file is not a checkpoint, is truncated or altered, holds more than
            tensors, or belongs to another fit (the message names what differs).
        """
        pieces: list[Piece] = []
        while (path := self.directory / piece_name(len(pieces))).exists():
            pieces.append(self._read(path, len(pieces)))
        seeds = {piece.seed for piece in pieces}
        if len(seeds) > 1:
            raise ValueError(
                f"the pieces in checkpoint_dir={str(self.directory)!r} come from fits with "
                "different seeds; empty the directory to start over."
            )
        return pieces, (seeds.pop() if seeds else None)

    def _read(self, path: Path, index: int) -> Piece:
        raw = path.read_bytes()
        where = f"checkpoint file {str(path)!r}"
        if not raw.startswith(MAGIC):
            raise ValueError(f"{where} is not a sklearn-greedy checkpoint; remove it.")
        try:
            digest, header, body = raw[len(MAGIC) :].split(b"\n", 2)
        except ValueError:
            raise ValueError(
                f"{where} is truncated; delete it to train its {self.kind} again."
            ) from None
        if hashlib.sha256(header + b"\n" + body).hexdigest().encode() != digest:
            raise ValueError(
                f"{where} is corrupt: its checksum does not match its contents (truncated "
                f"or altered); delete it to train its {self.kind} again."
            )
        info = json.loads(header)
        if info.get("format") != FORMAT or info.get("index") != index:
            raise ValueError(f"{where} has format {info.get('format')!r}, index "
                             f"{info.get('index')!r}; expected {FORMAT}, {index}.")  # fmt: skip
        self._check_fingerprint(info["fingerprint"], where)
        try:
            tensors = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
            raise ValueError(
                f"{where} is refused: it holds more than tensors and plain values, and "
                "loading it could run code. Remove it."
            ) from exc
        return Piece(index, tensors, info["meta"], info["seed"])

    def _check_fingerprint(self, theirs: dict, where: str) -> None:
        ours = self.fingerprint
        differ = [
            f"{key}: {theirs.get(key, '(absent)')!r} there, {ours.get(key, '(absent)')!r} here"
            for key in sorted(set(ours) | set(theirs))
            if theirs.get(key) != ours.get(key)
        ]
        if differ:
            raise ValueError(
                f"{where} belongs to another fit and is not loaded; what differs: "
                + "; ".join(differ)
                + ". Use another checkpoint_dir, or empty this one to start over."
            )

    # -- writing ---------------------------------------------------------------------------
    def save(self, index: int, tensors: dict, meta: dict, *, seed: int) -> None:
        """Write piece ``index`` atomically: ``tensors`` (a dict of tensors and plain
        containers) and ``meta`` (JSON values)."""
        if not self.write:
            return
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        header = json.dumps(
            {"format": FORMAT, "index": index, "seed": int(seed),
             "fingerprint": self.fingerprint, "meta": meta},
            sort_keys=True,
            default=_plain,
        ).encode()  # fmt: skip
        body = buffer.getvalue()
        digest = hashlib.sha256(header + b"\n" + body).hexdigest().encode()
        atomic_write(
            self.directory / piece_name(index), MAGIC + digest + b"\n" + header + b"\n" + body
        )

    def discard_from(self, index: int) -> None:
        """Remove pieces ``index`` on (a run that does not resume overwrites them)."""
        if not self.write:
            return
        while (path := self.directory / piece_name(index)).exists():
            path.unlink()
            index += 1


def _plain(value):
    """numpy scalars and arrays in metadata as JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be written in a checkpoint's metadata")


class Piece:
    """One finished piece read back: its tensors, its JSON metadata, the fit's seed."""

    def __init__(self, index: int, tensors: dict, meta: dict, seed: int):
        self.index, self.tensors, self.meta, self.seed = index, tensors, meta, seed


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a kill at any moment leaves either the old file
    or the new one, never a part (temporary file, fsync, rename, fsync of the folder)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every file system can sync a folder
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def open_store(
    estimator, *, kind: str, ignore: tuple[str, ...], data: dict
) -> CheckpointStore | None:
    """The store of ``estimator.checkpoint_dir`` for this fit (None when unset), checked
    writable; ``data`` adds the fit's data facts (classes, shapes, digests) to the
    fingerprint. Ranks other than 0 of a process group only read."""
    directory = getattr(estimator, "checkpoint_dir", None)
    if directory is None:
        return None
    import torch.distributed as dist

    fingerprint = {
        "estimator": type(estimator).__name__,
        **estimator_fingerprint(estimator, ignore=ignore),
        **{f"data {k}": canonical(v) for k, v in data.items()},
        **{f"version {k}": v for k, v in environment().items()},
    }
    writer = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    store = CheckpointStore(directory, fingerprint, kind=kind, write=writer)
    store.check_writable()
    return store


def resume_fit(estimator, seed: int, *, continuing: str | None, kind: str, ignore, data):
    """The checkpoint store of a fit, the finished pieces it holds, and the seed to train
    with: the first run's, so that the pieces still to train draw what they would have
    drawn in one uninterrupted fit. ``continuing`` names what continues a model in memory
    (warm start, partial_fit) when this fit does: refused, as the two do not mix."""
    if continuing:
        raise ValueError(
            f"checkpoint_dir resumes a fit from disk; {continuing} the {kind}s in memory. "
            "Use one or the other: set checkpoint_dir=None to continue this model, or "
            "warm_start=False to fit from the checkpoints."
        )
    store = open_store(estimator, kind=kind, ignore=ignore, data=data)
    pieces, stored_seed = store.load()
    return store, pieces, (seed if stored_seed is None else stored_seed)
