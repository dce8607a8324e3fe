"""Turning raw inputs into model tokens, shared by training data (``data/``) and serving (``serve/``):
the Qwen3-VL image/video processor (smart_resize, patchify), the tokenizer and the chat template."""
