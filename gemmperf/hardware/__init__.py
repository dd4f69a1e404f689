"""GPU hardware: the spec database and the occupancy calculator."""
