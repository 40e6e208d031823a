"""A stand-in for the platforms' reporting endpoints, for dev mode, tests and benchmarks."""
