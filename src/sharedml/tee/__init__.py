"""The TEE scheme: attest an enclave, encrypt data to it, train inside, destroy.

See docs/architecture.md §4 and §7. ``attestation/`` verifies evidence and produces it on
each TEE (configfs-tsm, Gramine, Nitro NSM, the simulator); ``enclave/`` is the
enclave runtime (its own process); ``ratls`` binds the enclave's TLS key to
its evidence; ``provider`` is the data owner's SDK; ``manager`` the platform's
enclave lifecycle and ``cluster_service`` its cluster and upgrades;
``images`` reads what enclave builds measure (``deploy/tee/``).
"""
