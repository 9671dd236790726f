"""Overlay networks live in the OVN northbound database: kvmnet.plan.overlay_nb plans them,
this wraps each of its Changes in an Action."""

from __future__ import annotations

from kvmnet.plan.core import Action, Ctx, Finding, in_scope


def plan_ovn(ctx: Ctx) -> None:
    from kvmnet.plan.overlay_nb import plan_nb

    if ctx.live.ovn is None:
        ctx.error(("ovn",), "the OVN northbound database was not read")
        return
    p = plan_nb(ctx.spec, ctx.live.ovn, ctx.adopt, lambda n: in_scope(n, ctx.scope),
                ctx.macs)
    ctx.findings += [Finding(f.path, f.message, f.severity) for f in p.findings]
    ctx.actions += [Action(f"ovn.{c.op}", c.target, c.impact, c.summary, c.details,
                           needs_allow_destroy=c.needs_allow_destroy, skipped=c.skipped, ovn=c)
                    for c in p.changes]
