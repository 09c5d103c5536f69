"""The ``hydra/sweeper=adaptive_seeds`` plugin (Hydra finds sweepers in the ``hydra_plugins`` namespace)."""
