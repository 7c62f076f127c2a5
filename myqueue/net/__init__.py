"""Plain HTTP/1.1 keep-alive connections shared by the client library and the managers' broker calls.

Imports only the standard library and ``myqueue.core`` (an import-linter contract).
"""
