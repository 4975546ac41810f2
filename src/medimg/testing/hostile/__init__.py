"""A hostile-input corpus for medimg's command line (see :mod:`medimg.testing.hostile.files`)."""

from medimg.testing.hostile.files import AREAS, CASES, FUZZ_SUFFIXES, Built, Case, build, write_corpus, write_seeds

__all__ = ["Case", "Built", "CASES", "AREAS", "build", "write_corpus", "write_seeds", "FUZZ_SUFFIXES"]
