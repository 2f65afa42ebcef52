"""imprint_bench: weight imprinting on frozen foundation models (the IMPRINT framework), benchmarked."""

from imprint_bench.config import register_resolvers
from imprint_bench.imprint.head import ImprintedHead
from imprint_bench.imprint.spec import AggSpec, GenSpec, MethodSpec

__all__ = ["AggSpec", "GenSpec", "ImprintedHead", "MethodSpec"]
__version__ = "0.1.0"

register_resolvers()
