"""kvmnet: declarative virtual networking for KVM hosts through libvirt."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """``kvmnet.__version__``: the installed distribution's version, which setuptools-scm
    takes from the git tag at build or install time (docs/RELEASING.md). Looked up on
    first use, so a command that never asks does not pay for importlib.metadata."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("kvmnet")
        except PackageNotFoundError:  # a source tree on sys.path, never installed
            return "0.0.0+unknown"
    raise AttributeError(f"module 'kvmnet' has no attribute {name!r}")
