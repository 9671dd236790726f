"""kvmnet's test lab: a real libvirtd in a network namespace, and tiny QEMU guests.

Plain Python, no kvmnet imports, so the lab can test kvmnet without trusting it.

- :mod:`lab.libvirtd` starts (or reuses) libvirtd inside the namespace ``kvmnet-lab``
  and gives netlink (pyroute2) access to what it makes there.
- :mod:`lab.guest` builds a busybox initramfs and libvirt domain XML for a guest that
  takes a DHCP lease, reports it on its serial console and serves its name over HTTP.
- :mod:`lab.netxml` builds libvirt network XML for tests (lxml, no string formatting).

The pytest fixtures (``libvirtd``, ``lv_conn``) live in ``tests/conftest.py``.
"""
