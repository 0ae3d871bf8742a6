"""The TEE scheme: attest an enclave, encrypt data to it, train inside, destroy.

See ARCHITECTURE.md §5. ``attestation/`` verifies evidence, ``enclave/`` is the
enclave runtime (its own process), ``provider`` is the data owner's SDK and
``manager`` the platform's enclave lifecycle.
"""
