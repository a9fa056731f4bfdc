"""Training-time held-out metrics (incl. carry_boundary) of finished checkpoints."""
import sys
import torch
from addray.core.checkpoint import load_model
from addray.core.data import make_dataset
from addray.core.evaluate import HeldOut, evaluate

torch.set_num_threads(1)
for path in sys.argv[1:]:
    model, cfg = load_model(path)[:2]
    d = cfg.data
    ds = make_dataset(d)
    held = HeldOut(ds.test, ds.n_uniform, d.operand_max, d.base)
    m = evaluate(model, held, 2048, torch.device("cpu"))
    print(path, {k: round(v, 4) for k, v in m.items() if isinstance(v, float)},
          {s: len(i) for s, i in held.boundary.items()})
