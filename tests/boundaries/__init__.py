"""Boundary tests: clients, the socket, hostile bytes, odd payloads, permissions, against
real worker processes."""
