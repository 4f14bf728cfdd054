"""Shared core: configuration, errors and uncertainty, with three sub-packages for its three jobs.

``source`` (schema, database access, point-of-sale import, forecast cache), ``inventory`` (policy, schedules,
material demand, proposal) and ``evaluation`` (replay, metrics). Every other package (features, training, serving,
planning, generator) imports this one; it imports none of them.
"""
