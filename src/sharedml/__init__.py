"""sharedml — shared machine learning without sharing data.

Several organisations train and use one model together; each keeps its data.
Two schemes (standard §5): MPC (secret sharing and homomorphic encryption
between the data providers) and TEE (an attested enclave).
"""

from sharedml.errors import SharedMLError
from sharedml.session import Session

__version__ = "0.1.0"

__all__ = ["Session", "SharedMLError", "__version__"]
