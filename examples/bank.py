"""The bank sample domain, shipped as `sekiban.examples.bank` (the guides import it from
the installed package); this name stays for the repository's tests and benchmarks.
"""

from sekiban.examples.bank import *  # noqa: F403
from sekiban.examples.bank import _AccountCommand  # noqa: F401
