"""`python -m kvmnet`: the `kvmnet` command (cli.client: through a kvmnet server when one
listens, else in this process). The boot rollback unit runs `python -m kvmnet rollback`,
which the client never sends to a server."""

from kvmnet.cli.client import run

run()
