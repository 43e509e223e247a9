"""Offline data stages: the synthetic world and mask generation into shards."""
