"""Inference, from an image to masks: ``Predictor`` and its runtimes (``predictor``,
``backends``), input and output processing (``preprocess``, ``postprocess``), model files
(``modelfile``, ``weights``), face detection (``detect``), whole photos (``scene``) and drawing
(``annotate``). Imports PyTorch only inside the PyTorch backend and the weight loaders."""
