import sys

from lifeline_agent.cli import main

sys.exit(main())
