"""Model definitions: Qwen3-VL (vision-language prior) and the action expert."""
