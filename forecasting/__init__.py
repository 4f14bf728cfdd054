"""Shared core: configuration, source schema and data access, domain types.

Every other package (features, training, serving, generator) imports this one; it imports none of them.
"""

__version__ = "0.1.0"
