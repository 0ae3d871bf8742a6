"""Cryptographic primitives only, no protocol logic (docs/architecture.md §2)."""
