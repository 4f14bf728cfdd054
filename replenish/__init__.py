"""The ``replenish`` command: the composition root that wires generator, features, training and serving."""
