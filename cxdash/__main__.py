import sys

from cxdash.cli.main import main

sys.exit(main())
