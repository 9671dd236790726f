"""apply for guest firewalls: define, redefine and undefine kvmnet's nwfilters."""

from __future__ import annotations

from kvmnet.apply.step import Step
from kvmnet.plan import Action


def _name(a: Action) -> str:
    return a.target.removeprefix("nwfilter/")


def define(a: Action, step: Step) -> str:
    step.backend.define_nwfilter(_name(a), a.xml)
    return ""


def redefine(a: Action, step: Step) -> str:
    step.backend.define_nwfilter(_name(a), a.xml, "redefine")
    return "libvirt re-instantiated it on the running guests that use it"


def remove(a: Action, step: Step) -> str:
    step.backend.undefine_nwfilter(_name(a))
    return ""
