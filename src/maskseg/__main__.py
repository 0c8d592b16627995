import sys

from maskseg.cli.main import main

sys.exit(main())
