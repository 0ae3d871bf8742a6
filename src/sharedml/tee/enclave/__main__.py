"""``python -m sharedml.tee.enclave``: run one enclave process (see :mod:`.service`)."""

from sharedml.tee.enclave.service import main

main()
