"""The shard format: schema, RLE codec, atomic writer, webdataset reader, verify.

``pipeline/`` writes through this package and ``train/`` reads through it; nothing else
knows tar details.
"""
