"""ems-ray: joint architecture, channel-pruning and mixed-precision search (EMS/APQ) on Ray.

How data flows through a run (one folder per stage; `pipeline/stages.py` lists them in order):

    space/      search space, sub-net configs, gene rows, the predictor's one-hot encoding
    hardware/   BitFusion cost model -> per-layer LUT (latency, energy) for every sub-net
    data/       Fashion-MNIST / CIFAR-10 / ImageFolder splits (train, val, test)
    supernet/   the elastic network and sub-net extraction; train/ trains it (progressive shrinking,
                optionally quantization-aware)
    quant/      fake-quant layers, bit-width policies, calibration, fine-tune, export
                (the quantizers themselves: quantizers.py, below supernet/ and quant/)
    collect/    sampled sub-nets measured by Ray actors -> Parquet (FP and quantized)
    predictor/  accuracy predictors trained on that data (FP, then transferred to quantized)
    search/     best sub-net under a budget: evolution / Optuna / random, scored by predictor + LUT
    final/      the searched sub-nets and the baselines measured on the test split
    report/     the run's Markdown report and plots
    pipeline/   all of the above in order, with a manifest for skip/resume

`config.py` holds the run config (one section per stage) and `cli.py` the `ems-ray` command.
"""
