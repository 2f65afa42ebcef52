"""imprint_bench's Hydra configs, shipped inside the package as ``imprint_bench.conf`` (``imprint_bench/conf``
links here); composed through ``pkg://imprint_bench.conf``."""
