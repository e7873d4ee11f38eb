"""`python -m tap_conversations.airbyte` = `source-conversations`."""

import sys

from tap_conversations.airbyte.cli import main

sys.exit(main())
