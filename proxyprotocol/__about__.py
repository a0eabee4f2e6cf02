"""The package's version, as 0.11 exposed it."""

from __future__ import annotations

__all__ = ['__version__']


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version('proxy-protocol')
    except PackageNotFoundError:  # pragma: no cover - running from a tree
        return '1.0.0.dev0'


#: The installed distribution's version.
__version__: str = _version()
