import sys

from mobilevit_utils.cli import main

sys.exit(main())
