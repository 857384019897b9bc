"""PyTorch reference implementations of the RepDistiller-family distillation losses (see README.md)."""

LOSSES = ("kd", "fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft", "fsp", "nst", "crd", "ofd", "kdsvd")
