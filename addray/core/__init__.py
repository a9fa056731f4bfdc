"""The Ray-free core: config, tokens and data, model, training, decoding, evaluation,
checkpoints and verification. Nothing here imports Ray; ``addray.core.config`` and
``addray.core.tokens`` do not import torch either."""
