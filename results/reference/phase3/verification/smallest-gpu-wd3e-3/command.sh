# Run on the lent H200 (device tool, one call, 535 s), from the project root; the device
# tool returned only the first files of $OUT (a file-count limit): summary.txt (every
# run's last line and verify verdict), gpu_util.csv and the logs of the runs the deadline
# rule stopped. The three completed wd3e-3 runs' logs, checkpoints and verify outputs did
# not come back; their final lines and verdicts are in summary.txt.
nvidia-smi -L; python3 -c "import torch;print(torch.__version__, torch.cuda.get_device_name(0))"
export TORCHINDUCTOR_COMPILE_THREADS=1 PYTHONPATH=$PWD
timeout 585 python3 benchmarks/gpu_pack_runs.py --config configs/smallest.yaml \
  --out $OUT/smallest-gpu --deadline-s 515 --seeds 0 1 2 --max-steps 200000 \
  --set training.check_every=2500 training.precision=float32 training.compile=on \
  --recipe wd3e-3 optimizer.weight_decay=0.003 --recipe wd1e-2 \
  --recipe wd1e-2-b512 training.batch_size=512 --recipe wd1e-3 optimizer.weight_decay=0.001
