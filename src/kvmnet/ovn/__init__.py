"""Overlay networks on OVN: what kvmnet wants in the northbound database.

    model   frozen NB values (Switch, Dhcp, Port, Router, NbState) and planned Changes
    want    Spec -> wanted NbState (pure)
    diff    (Spec, live NbState) -> NbPlan of Changes (pure; plan.py wraps them)
    nb      ovsdbapp: fetch + parse the live NbState, apply one Change per transaction
    nbcmd   kvmnet's own ovsdbapp command (build a whole logical router)
    importer  live NbState -> overlay networks and guest NICs of a Spec (pure)
"""
