"""The platform: the control module (MPC) and computing platform manager (TEE).

It sees job specs, metadata, status and the audit log; never a provider's raw
data (docs/architecture.md §1). ``store/`` is the database, ``auth`` users and
access, ``audit`` the hash-chained log, ``service`` the operations the REST API
(``api/``) exposes.
"""
