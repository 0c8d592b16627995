"""Ways to spread one ``maskseg predict`` run over many processes or machines, each doing the
same per-file work as the local engine (``maskseg.cli.predict``), so the files written are the
same: ``shard`` (the K-th of N shares of the run's files, for job arrays; nothing to install)
and ``ray`` (a Ray Data actor pool, one model per actor; the ``[ray]`` extra, imported only
when used)."""
