"""Every call from one myqueue component to another: keep-alive HTTP/1.1 connections (``pool``)
and the one envelope client on them (``envelope``).

Imports only the standard library and ``myqueue.core`` (an import-linter contract).
"""
