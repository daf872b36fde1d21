"""The models one worker process keeps loaded, within a memory budget in bytes.

A plugin instance is loaded once per (plugin, version, model directory) and kept for later
jobs. Before a load, and after it once its real size is known, the least recently used models
are unloaded until everything fits the budget. The real size is what the plugin says it holds
(``memory_bytes``: weights as loaded, which may be twice their files, or models the directory
does not hold), else the CUDA memory the load took, else the model files' size. Before a load,
a model loaded earlier counts as the size it had then, its files otherwise. A model larger than
the whole budget still loads (alone): refusing it would make the plugin unusable on this worker.
A load that runs out of memory beside other models (its estimate was short) is tried once more alone.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from atelier_sdk import Plugin, is_out_of_memory

logger = logging.getLogger("atelier.worker")

#: Share of the device's memory the default budget takes (the rest is for activations and caches).
GPU_BUDGET_SHARE = 0.8
CPU_BUDGET_SHARE = 0.5


@dataclass
class LoadedModel:
    plugin: Plugin
    plugin_id: str
    plugin_version: str
    model_dir: Path | None
    load_seconds: float
    nbytes: int
    last_used: float = field(default_factory=time.time)

    def describe(self) -> dict:
        return {
            "plugin": self.plugin_id, "plugin_version": self.plugin_version,
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "bytes": self.nbytes, "load_seconds": round(self.load_seconds, 3), "last_used_at": self.last_used,
        }


def _torch():
    """torch if this process already imported it (a plugin did); never imported just to ask."""
    return sys.modules.get("torch")


def cuda_index(device: str) -> int | None:
    if not device.startswith("cuda"):
        return None
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 0


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def resident_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def default_budget_bytes(device: str) -> int:
    index = cuda_index(device)
    torch = _torch()
    if index is not None and torch is None:
        # A CUDA worker is sized before any plugin has imported torch (``ATELIER_DEVICE=cuda:N`` is taken as
        # it is, without torch): asking it here is what keeps the budget the GPU's, not half the host's RAM.
        try:
            import torch
        except ImportError:
            torch = None
    if index is not None and torch is not None and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(index).total_memory * GPU_BUDGET_SHARE)
    return int(physical_memory_bytes() * CPU_BUDGET_SHARE)


def memory_snapshot(device: str, budget_bytes: int) -> dict[str, int]:
    """Device and process memory for the worker's report."""
    snapshot = {"rss_bytes": resident_bytes(), "budget_bytes": budget_bytes}
    index = cuda_index(device)
    torch = _torch()
    if index is not None and torch is not None and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(index)
        snapshot.update(
            device_allocated_bytes=int(torch.cuda.memory_allocated(index)),
            device_reserved_bytes=int(torch.cuda.memory_reserved(index)),
            device_free_bytes=int(free),
            device_total_bytes=int(total),
        )
    else:
        snapshot.update(device_total_bytes=physical_memory_bytes())
    return snapshot


def directory_bytes(model_dir: Path | None) -> int:
    if model_dir is None:
        return 0
    return sum(path.stat().st_size for path in Path(model_dir).rglob("*") if path.is_file())


def release_device_memory(device: str) -> None:
    torch = _torch()
    if cuda_index(device) is not None and torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelCache:
    """Loaded plugin instances of this process, least recently used unloaded first."""

    def __init__(self, device: str, budget_bytes: int | None = None) -> None:
        self.device = device
        self.budget_bytes = budget_bytes if budget_bytes is not None else default_budget_bytes(device)
        self._models: OrderedDict[tuple, LoadedModel] = OrderedDict()
        #: The size each model had once loaded, kept after it is unloaded: a better guess than its
        #: files when it is loaded again (a bf16 checkpoint loaded as float32 holds twice its files).
        self._loaded_sizes: dict[tuple, int] = {}
        self._lock = threading.RLock()

    @property
    def used_bytes(self) -> int:
        return sum(m.nbytes for m in self._models.values())

    def get(self, plugin_class: type[Plugin], model_dir: Path | None) -> LoadedModel:
        manifest = plugin_class.manifest
        key = (manifest.id, manifest.version, str(model_dir))
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
                loaded.last_used = time.time()
                return loaded
            estimate = self._loaded_sizes.get(key) or directory_bytes(model_dir)
            self._evict_until_fits(estimate)
            try:
                instance, seconds, measured = self._load(plugin_class, model_dir)
                out_of_memory = False
            except Exception as error:
                if not is_out_of_memory(error) or not self._models:
                    raise
                # Its estimate was short (on a first load only its files are known, and weights as loaded may
                # hold twice as much) and the models kept here hold what it lacked: it would fail the same way
                # at every attempt. It is loaded again alone, below: outside this block, so that the half-loaded
                # instance this exception holds is let go before.
                logger.warning("loading %s %s ran out of memory beside %d other models (%s); unloading them to load "
                               "it alone", manifest.id, model_dir, len(self._models), error)
                out_of_memory = True
            if out_of_memory:
                while self._models:
                    self._unload(next(iter(self._models)))
                instance, seconds, measured = self._load(plugin_class, model_dir)
            nbytes = self._reported_bytes(instance)
            if nbytes is None:
                nbytes = measured if measured > 0 else estimate
            loaded = LoadedModel(instance, manifest.id, manifest.version, model_dir, seconds, int(nbytes))
            logger.info("loaded %s %s from %s on %s in %.2f s (%d MiB)", manifest.id, manifest.version, model_dir,
                        self.device, seconds, loaded.nbytes // 2**20)
            self._models[key] = loaded
            self._loaded_sizes[key] = loaded.nbytes
            # Now that its real size is known, make room for it as it really is.
            self._evict_until_fits(0, keep=key)
            return loaded

    def _load(self, plugin_class: type[Plugin], model_dir: Path | None) -> tuple[Plugin, float, int]:
        """A new instance of the plugin, loaded; with its load's seconds and the CUDA memory the load took
        (0 off CUDA)."""
        torch = _torch()
        on_cuda = cuda_index(self.device) is not None and torch is not None and torch.cuda.is_available()
        before = torch.cuda.memory_allocated(cuda_index(self.device)) if on_cuda else 0
        started = time.perf_counter()
        instance = plugin_class()
        instance.load(self.device, model_dir)
        seconds = time.perf_counter() - started
        torch = _torch()  # the plugin may have imported it just now
        on_cuda = cuda_index(self.device) is not None and torch is not None and torch.cuda.is_available()
        measured = torch.cuda.memory_allocated(cuda_index(self.device)) - before if on_cuda else 0
        return instance, seconds, measured

    @staticmethod
    def _reported_bytes(instance: Plugin) -> int | None:
        """The plugin's own figure; a plugin whose ``memory_bytes`` fails is measured as one without it."""
        try:
            return instance.memory_bytes()
        except Exception:
            logger.exception("%s: memory_bytes() failed; measuring instead", instance.manifest.id)
            return None

    def _evict_until_fits(self, incoming: int, keep: tuple | None = None) -> None:
        while self._models and self.used_bytes + incoming > self.budget_bytes:
            key = next(iter(self._models))
            if key == keep:
                if len(self._models) == 1:
                    return
                self._models.move_to_end(key)
                key = next(iter(self._models))
            self._unload(key)

    def _unload(self, key: tuple) -> None:
        evicted = self._models.pop(key)
        logger.info("unloading %s %s (%d MiB) to stay within %d MiB", evicted.plugin_id, evicted.model_dir,
                    evicted.nbytes // 2**20, self.budget_bytes // 2**20)
        try:
            evicted.plugin.unload()
        except Exception:
            logger.exception("unloading %s failed", evicted.plugin_id)
        release_device_memory(self.device)

    def describe(self) -> list[dict]:
        with self._lock:
            return [m.describe() for m in self._models.values()]

    def clear(self) -> None:
        with self._lock:
            for loaded in self._models.values():
                loaded.plugin.unload()
            self._models.clear()
            release_device_memory(self.device)
