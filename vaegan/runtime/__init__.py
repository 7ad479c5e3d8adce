"""The torch-free runtime: load an artifact dir, sample, encode, decode, serve.

Never imports torch. Heavy imports (engines) happen when a Sampler is loaded, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaegan.runtime.batcher import MicroBatcher
    from vaegan.runtime.sampler import Sampler

__all__ = ["MicroBatcher", "Sampler"]


def __getattr__(name: str) -> Any:
    if name == "Sampler":
        from vaegan.runtime.sampler import Sampler

        return Sampler
    if name == "MicroBatcher":
        from vaegan.runtime.batcher import MicroBatcher

        return MicroBatcher
    raise AttributeError(name)
