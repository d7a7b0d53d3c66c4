"""Zarr replay buffer in the layout real-stanford/diffusion_policy and DP3 use:

    <store>/data/<key>          (T_total, ...) every episode concatenated over time
    <store>/meta/episode_ends   (E,) int64, exclusive end index of each episode

Existing DP / DP3 stores (zarr v2, directories or ``.zarr.zip``) open as they are. New stores are
written in zarr format 2 so Diffusion Policy's own tools read them too.

Appending writes the data arrays first and ``episode_ends`` last: an interrupted append leaves
trailing rows that readers ignore (everything is cut at ``episode_ends[-1]``), never a corrupt store.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from .. import constants as C
from ..errors import DatasetError


def _open_store(path: Path, mode: str):
    if path.suffix == ".zip":
        return zarr.storage.ZipStore(str(path), mode="r" if mode == "r" else "a")
    return str(path)


class ReplayBuffer:
    def __init__(self, root: zarr.Group, path: Path):
        self.root = root
        self.path = path
        if C.ZARR_DATA not in root or C.ZARR_META not in root or C.ZARR_EPISODE_ENDS not in root[C.ZARR_META]:
            raise DatasetError(f"dataset '{path}': expected groups data/ and meta/episode_ends "
                               f"(Diffusion Policy layout), got {sorted(root.keys())}")

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> "ReplayBuffer":
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"dataset '{path}' does not exist")
        try:
            root = zarr.open_group(_open_store(path, mode), mode=mode)
        except Exception as e:  # zarr raises several types for a non-store
            raise DatasetError(f"dataset '{path}': not a zarr store ({type(e).__name__}: {e})") from None
        return cls(root, path)

    @classmethod
    def create(cls, path: str | Path, *, overwrite: bool = False) -> "ReplayBuffer":
        path = Path(path)
        if path.exists() and not overwrite:
            return cls.open(path, mode="a")
        root = zarr.open_group(str(path), mode="w", zarr_format=2)
        root.create_group(C.ZARR_DATA)
        meta = root.create_group(C.ZARR_META)
        meta.create_array(C.ZARR_EPISODE_ENDS, shape=(0,), dtype="int64", chunks=(1024,))
        return cls(root, path)

    # --- provenance ------------------------------------------------------------------------
    @property
    def provenance(self) -> dict:
        """Where the episodes came from (e.g. ``{"task": "push", "demo_seeds": [1000, 1099]}``): the
        store's ``provenance`` attribute, carried into the checkpoints trained on it."""
        return dict(self.root.attrs.get("provenance", {}))

    def set_provenance(self, **values) -> None:
        self.root.attrs["provenance"] = {**self.provenance, **values}

    # --- reading ----------------------------------------------------------------------------
    @property
    def episode_ends(self) -> np.ndarray:
        return np.asarray(self.root[C.ZARR_META][C.ZARR_EPISODE_ENDS][:], dtype=np.int64)

    @property
    def n_episodes(self) -> int:
        return int(self.root[C.ZARR_META][C.ZARR_EPISODE_ENDS].shape[0])

    @property
    def n_steps(self) -> int:
        ends = self.episode_ends
        return int(ends[-1]) if len(ends) else 0

    @property
    def keys(self) -> list[str]:
        return sorted(self.root[C.ZARR_DATA].keys())

    def array(self, key: str):
        data = self.root[C.ZARR_DATA]
        if key not in data:
            raise DatasetError(f"dataset '{self.path}': key data/{key} not found; available: {self.keys}")
        return data[key]

    def load(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Read the named keys into memory, cut at the last complete episode."""
        n = self.n_steps
        out = {}
        for key in keys:
            arr = self.array(key)
            if arr.shape[0] < n:
                raise DatasetError(f"dataset '{self.path}': data/{key} has {arr.shape[0]} steps, "
                                   f"expected >= {n} (meta/episode_ends[-1])")
            out[key] = np.asarray(arr[:n])
        return out

    # --- writing ----------------------------------------------------------------------------
    def add_episode(self, episode: dict[str, np.ndarray]) -> None:
        self.add_episodes([episode])

    def add_episodes(self, episodes: list[dict[str, np.ndarray]]) -> None:
        """Append episodes: one write per key, then ``episode_ends`` (the commit point)."""
        if not episodes:
            return
        keys = set(episodes[0])
        lengths = []
        for i, ep in enumerate(episodes):
            sizes = {k: len(v) for k, v in ep.items()}
            if set(ep) != keys or len(set(sizes.values())) != 1 or 0 in sizes.values():
                raise DatasetError(f"episode {i}: expected keys {sorted(keys)} with one common non-zero length, "
                                   f"got {sizes}")
            lengths.append(next(iter(sizes.values())))
        if self.n_episodes and keys != set(self.keys):
            raise DatasetError(f"episode: expected keys {self.keys}, got {sorted(keys)}")
        data = self.root[C.ZARR_DATA]
        start = self.n_steps
        total = sum(lengths)
        for key in sorted(keys):
            value = np.concatenate([np.asarray(ep[key]) for ep in episodes])
            if key not in data:
                rows = int(np.clip(2 ** 22 // max(1, value[0].nbytes), 1, 1024))  # ~4 MB chunks
                data.create_array(key, shape=(0, *value.shape[1:]), dtype=value.dtype,
                                  chunks=(rows, *value.shape[1:]))
            arr = data[key]
            if arr.shape[1:] != value.shape[1:]:
                raise DatasetError(f"episode: data/{key} expected per-step shape {arr.shape[1:]}, got "
                                   f"{value.shape[1:]}")
            arr.resize((start + total, *arr.shape[1:]))
            arr[start:start + total] = value
        ends = self.root[C.ZARR_META][C.ZARR_EPISODE_ENDS]
        n = ends.shape[0]
        ends.resize((n + len(episodes),))
        ends[n:] = start + np.cumsum(lengths)
