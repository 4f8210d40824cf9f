"""asv benchmarks for fastrnn (see asv.conf.json at the repository root)."""
