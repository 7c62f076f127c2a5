"""The broker service: hosts partitions, appends record batches, serves fetches and positions."""
