"""The ctypes binding of the whole kdfuse C API (include/kdfuse/kdfuse.h): one module per loss (kd, fitnet, at, ...),
each a thin call of its C entry point with every option (grad_loss, grad_scale, accumulate, out=, a caller
workspace, strided inputs), and _lib (loading, handles, status errors). The gradient check and the accuracy table
drive the library through it; PyTorch users want kdfuse.ops / kdfuse.nn (the compiled operators). The functions
are re-exported by the kdfuse package (kdfuse.kd, kdfuse.at, ...)."""
