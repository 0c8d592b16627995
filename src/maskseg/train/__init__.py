"""Training and everything that needs PyTorch to write a model: the dataset, augmentation,
losses, the training loop and checkpoints, train/cv/gate workflows, the mask-presence gate's
fitting and ONNX export. Imported only by the CLI's training commands and benchmarks."""
