"""The embedded default: a procedural world, a tiny CLIP pretrained on its captions, and the
ceiling diagnostic. The real pipeline reaches it only through params.yaml."""
