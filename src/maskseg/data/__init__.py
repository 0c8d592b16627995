"""Data sets on disk: image/mask pairs in the MSFD layout or plain folders and their validation
(``pairs``), the full MSFD release's face boxes, photos and scene windows (``msfd``), the
decoded training cache (``cache``), grouped seeded splits (``splits``), face crops cut from
photos for the gate (``faces``), and scenes composed from pairs for benchmarks and tests
(``synth``). numpy and OpenCV only."""
