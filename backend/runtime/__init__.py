"""Where work and shared state live: the analysis process pool (executor) and the pool service that lets every
HTTP process use one pool, single flight and claims, and the shared-state implementations of the roles in
backend/roles.py (in process, memory-mapped table, Redis)."""
