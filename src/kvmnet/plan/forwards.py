"""Port forwards: one firewall.sync action after the networks (plan.forward_rules)."""

from __future__ import annotations

from kvmnet.plan.core import Action, Ctx, in_scope


def plan_firewall(ctx: Ctx) -> None:
    if ctx.live.firewall is None and not ctx.spec.has_forwards():
        return  # nothing wanted, nothing read: no need to load kvmnet.plan.forward_rules
    from kvmnet.plan.forward_rules import plan_forwards

    p = plan_forwards(ctx.spec, ctx.live.firewall, lambda n: not in_scope(n, ctx.scope),
                      ctx.live.is_test)
    if p is None:
        return
    for path, msg in p.errors:
        ctx.error(path, msg)
    if not p.errors:
        ctx.actions.append(Action("firewall.sync", "firewall/forwards", "live", p.summary,
                                  p.details, skipped=p.skipped, forwards=p.forwards))
