"""The enclave runtime: the program that runs inside the TEE (or the simulator).

``runtime`` is the lifecycle state machine, ``learners`` the training it does,
``service`` its gRPC face and process entry point, ``client`` how providers and
the manager call it, ``wire`` the typed messages between them.
"""
