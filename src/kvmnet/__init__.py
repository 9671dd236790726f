"""kvmnet: declarative virtual networking for KVM hosts through libvirt."""

__version__ = "0.1.0"
