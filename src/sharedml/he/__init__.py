"""Batched homomorphic-encryption helpers beyond :mod:`sharedml.crypto`:
fixed-point slot packing of several values per plaintext and a process pool
for encryption."""

from sharedml.he.packing import SlotLayout, pack_ciphertexts, unpack_slots
from sharedml.he.pool import Encryptor

__all__ = ["Encryptor", "SlotLayout", "pack_ciphertexts", "unpack_slots"]
