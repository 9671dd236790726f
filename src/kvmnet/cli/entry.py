"""The `kvmnet` command: cli.main in a process that ends without the interpreter's
teardown.

A kvmnet command is one short process, and two of its costs are not its work: the
cyclic collector walking the objects the imports make (they hold no garbage worth
collecting), and the teardown at exit, which collects and frees every module and
object one by one. Measured on a no-op apply of 50 networks (~0.2 s): ~15 ms and
~22 ms. So the collector is off from the first import, and once main() has returned
and the output is flushed, the process ends with os._exit. It exits the usual way
when anything may still need the teardown: another thread alive, an atexit handler
registered, a profiler or tracer running (`python -m cProfile`, coverage: they write
their results after the script ends), or output that could not be flushed (a closed
pipe: Python's own handling then applies). Callers in a longer process use cli.main,
which does neither.
"""

from __future__ import annotations

import gc
import os
import sys


def run() -> None:
    gc.disable()
    from kvmnet.cli.main import main

    finish(main())


def finish(rc: int) -> None:
    """Exit with `rc`: flush, then os._exit when nothing needs the normal exit."""
    import atexit
    import threading

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # closed pipe or stream: let Python report it
        raise SystemExit(rc) from None
    pending = getattr(atexit, "_ncallbacks", lambda: 1)()  # (unknown: assume some)
    watched = sys.getprofile() is not None or sys.gettrace() is not None
    if pending or watched or threading.active_count() > 1:
        raise SystemExit(rc)
    os._exit(rc)
