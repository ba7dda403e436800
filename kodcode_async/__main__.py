"""`python -m kodcode_async` is the `kodcode-async` command."""

import sys

from kodcode_async.cli import main

sys.exit(main())
