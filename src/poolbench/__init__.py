"""poolbench: which pooling of a transformer encoder's token states should feed your classifier?"""

from __future__ import annotations

from poolbench.run.resolvers import register_resolvers

__version__ = "0.1.0"

register_resolvers()
