"""Measuring segmenters: pure metric functions over confusion counts (``metrics``), the one
scoring loop (``scoring``), the ``evaluate`` report (``evaluation``), the mask-presence rates
(``presence_rates``), the classical methods (``baselines``) and the U-Net-vs-classical report
(``compare``). No PyTorch: everything here runs in the light install."""
