"""spec.check's rules, one module per resource kind (spec.hosts has the hosts: ones)."""
