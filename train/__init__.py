"""PixelCLIP fine-tuning and the tiny-CLIP pretraining of the embedded default."""
