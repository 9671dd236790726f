"""Independent network creates on a small thread pool (apply --parallel N).

A plan lists, in order, host bridges, then each network's actions, guests' NICs,
removals and forwards. A run of consecutive `network.create` actions is the one place
where nothing depends on its neighbours: each defines, starts and marks autostart a
network libvirt does not have yet, on a bridge and subnet check keeps apart from every
other. Starting a network is libvirtd's slow part (dnsmasq, the firewall), and
libvirt-python lets the GIL go during the call, so such a run goes to up to N threads on
the one connection; everything else (host bridges, redefines, live updates, NICs,
removals, forwards, OVN) still runs one action at a time in the plan's order, each only
after what came before it is done.

What a serial run would do stays what it does:
- the defines happen in plan order (each waits for the one before; only the starts and
  autostarts overlap), so what libvirt fills in by define order (a `virbrN` bridge name
  for a network whose spec names none) comes out as in a serial run;
- results are reported (progress lines, the report, --json) in plan order;
- the first failure in plan order stops the run: no action is started after a failure
  is seen, the ones in flight finish, and the creates that come after the failed one
  in plan order are undone (stopped and undefined: this apply defined them a moment
  ago, so they hold nothing), which leaves the host as the serial run leaves it; the
  failed action's message says what was undone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from kvmnet.apply.networks import undo_create
from kvmnet.apply.step import Result, Step
from kvmnet.plan import Action

TOGETHER = "network.create"
RunOne = Callable[[Action, Step], Result]
Shown = Callable[[int, Action, Result | None], None]   # (index in the run, action, result)


def run_length(actions: Sequence[Action], start: int, workers: int) -> int:
    """How many actions from `start` on may run together (1: this one runs alone)."""
    if workers < 2:
        return 1
    end = start
    while end < len(actions) and actions[end].kind == TOGETHER and not actions[end].skipped:
        end += 1
    return max(1, end - start)


def run_together(actions: Sequence[Action], step: Step, workers: int, run_one: RunOne,
                 shown: Shown) -> list[Result]:
    """Run independent creates on up to `workers` threads; return the results a serial
    run would have (up to and with the first failure), in plan order."""
    results: dict[int, Result] = {}
    pending: dict[Future[Result], int] = {}
    nxt = shown_to = 0
    before, step.turn = step.turn, _Turns(actions).turn
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kvmnet-apply") as pool:
            while pending or (nxt < len(actions) and not _failed(results)):
                while nxt < len(actions) and len(pending) < workers and not _failed(results):
                    shown(nxt, actions[nxt], None)
                    pending[pool.submit(run_one, actions[nxt], step)] = nxt
                    nxt += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    results[pending.pop(f)] = f.result()
                shown_to = _show_ready(actions, results, shown_to, shown)
    finally:
        step.turn = before
    return _as_serial(actions, results, step)


class _Turns:
    """Each action's define waits until the one before it in plan order has defined (or
    failed to). No deadlock: actions are handed to the pool in plan order, so the one
    before is running or done."""

    def __init__(self, actions: Sequence[Action]) -> None:
        self._index = {id(a): i for i, a in enumerate(actions)}
        self._done = [threading.Event() for _ in actions]

    @contextmanager
    def turn(self, a: Action) -> Iterator[None]:
        i = self._index[id(a)]
        if i:
            self._done[i - 1].wait()
        try:
            yield
        finally:
            self._done[i].set()


def _failed(results: dict[int, Result]) -> bool:
    return any(r.status == "failed" for r in results.values())


def _show_ready(actions: Sequence[Action], results: dict[int, Result], upto: int,
                shown: Shown) -> int:
    """Report the results known without a gap from the start, up to the first failure."""
    while upto in results and not any(results[k].status == "failed" for k in range(upto)):
        shown(upto, actions[upto], results[upto])
        upto += 1
    return upto


def _as_serial(actions: Sequence[Action], results: dict[int, Result],
               step: Step) -> list[Result]:
    """The results up to the first failure; what ran after it is undone."""
    first = min((k for k, r in results.items() if r.status == "failed"), default=None)
    if first is None:
        return [results[k] for k in range(len(actions))]
    undone: list[str] = []
    problems: list[str] = []
    for k in sorted(k for k in results if k > first):
        name = actions[k].target.partition("/")[2]
        if name in step.defined:  # (a create that failed before its define made nothing)
            problem = undo_create(name, step)
            (problems if problem else undone).append(problem or name)
    failed = results[first]
    if undone:
        failed.message += (f"; undone, as a one-at-a-time apply would not have made them: "
                           f"{', '.join(undone)}")
    if problems:
        failed.message += f"; could not undo: {'; '.join(problems)}"
    return [results[k] for k in range(first + 1)]
