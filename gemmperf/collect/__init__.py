"""The collector: measure GEMM kernel configurations on a GPU (or the seeded fake) into records."""
