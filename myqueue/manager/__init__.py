"""The managers: the primary owns cluster configuration, the replica serves reads and consumers."""
