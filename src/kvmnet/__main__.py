"""`python -m kvmnet`: the CLI (the boot rollback unit runs it this way)."""

from kvmnet.cli.main import run

run()
