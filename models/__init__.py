"""open_clip models as the trainer and the evaluator both use them: loading, dense features,
text and prompt encoding, model configs."""
