"""Training glue on megatron-core: arguments, the loop, checkpoints and metrics logging."""
