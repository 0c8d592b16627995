"""The ``maskseg`` command: thin argument parsing over the library (``main``), and the file
writer of ``predict`` (``predict``). Nothing here is imported by the library."""
