"""Every call from one myqueue component to another: keep-alive HTTP/1.1 connections (``pool``),
the same calls from a service's asyncio loop (``loop``) and the one envelope client on them
(``envelope``).

Imports only the standard library, httptools (``loop``'s parser) and ``myqueue.core`` (an
import-linter contract).
"""
