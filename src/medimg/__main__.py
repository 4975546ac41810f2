import sys

from medimg.cli.main import main

sys.exit(main())
