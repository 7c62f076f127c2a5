"""myqueue: a sharded, distributed log queue. Importing the package gives the client library only.

The seed's names (``MyProducer``, ``MyConsumer``, ``ApiHandler``, ``readProduceLog``,
``writeComsumeLog``) and the modern ``Producer``/``Consumer`` API; server code lives in
``myqueue.broker``, ``myqueue.manager`` and friends and is never imported from here.
"""

from .client import *  # noqa: F403 - the client's public names are the package's
from .client import __all__  # noqa: F401
