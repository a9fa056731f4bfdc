"""Probe: start a run from a finished checkpoint's weights with a changed config (a
fine-tune), by writing a step-0 checkpoint that `python -m addray.train --resume` continues.
usage: warmstart.py SRC_CKPT OUT_DIR CONFIG.yaml"""
import sys
from pathlib import Path
import torch
from addray.core import checkpoint as ckpt
from addray.core.config import load_config
from addray.core.model import Transformer
from addray.core.trainer import _save, lr_at, make_optimizer

src, out, cfg_path = sys.argv[1:4]
cfg = load_config(cfg_path)
model = Transformer(cfg.model)
payload = ckpt.load_checkpoint(src)
ckpt.load_weights(model, payload, src)
opt = make_optimizer(model, cfg, torch.device("cpu"))
t = cfg.training
sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, t, cfg.scheduler) / t.learning_rate)
state = {"step": 0, "best_exact_match": 0.0, "best_step": 0, "es_best": float("-inf"),
         "bad_evals": 0, "history": [], "train_seconds": 0.0, "status": "running", "reason": ""}
_save(Path(out) / "checkpoint.pt", cfg, model, opt, sch, state)
print("wrote", out, "from", src)
