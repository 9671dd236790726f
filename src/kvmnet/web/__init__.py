"""`kvmnet serve`: a read-only web page of a host's networks as they are, and of what a
spec would change there (kvmnet.web.app), safe by default (kvmnet.web.guard).

A layer of its own beside the CLI, on the service layer: it shows what the commands'
--json shows (kvmnet.service.views, kvmnet.service.look) and never writes. Its parts
(Starlette, uvicorn, Jinja2) are the optional extra `kvmnet[web]`.
"""

from __future__ import annotations

from kvmnet.errors import KvmnetError

NEEDS = ("starlette", "uvicorn", "jinja2")


def require() -> None:
    """A clear message, not an ImportError, when the web extra is not installed."""
    import importlib.util

    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        raise KvmnetError(f"kvmnet serve needs {', '.join(missing)}, which are not "
                          "installed: pip install 'kvmnet[web]' (Starlette, uvicorn, Jinja2); "
                          "on Debian: apt-get install python3-starlette python3-uvicorn "
                          "python3-jinja2")
