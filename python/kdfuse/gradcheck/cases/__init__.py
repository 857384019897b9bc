"""The gradient check's cases: one module per loss, named after it, with ENTRY (the C entry point whose presence
in the library means "implemented") and check(device, seed) -> rows (kdfuse.gradcheck.Row). Only the check imports
them; the runtime package never does."""
