"""Cryptographic primitives only, no protocol logic (ARCHITECTURE.md §2)."""
