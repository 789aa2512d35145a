"""`python -m webhook` is `package-injector`."""

import sys

from webhook.cli import main

sys.exit(main())
