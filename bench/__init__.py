"""`make bench`: Herald\x27s benchmarks (see docs/benchmarks.md)."""
