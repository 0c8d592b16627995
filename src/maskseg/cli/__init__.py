"""The ``maskseg`` command: thin argument parsing over the library. ``main`` assembles the
parser from one module per group of commands (``train``, ``evaluate``, ``media``, ``serve``,
``models``, ``data``; shared options in ``common``); ``predict`` is the file writer of
``maskseg predict``. Nothing here is imported by the library."""
