"""``python -m dashboard [STREAMLIT FLAGS]``: the dashboard, warmed up and on loopback by default (:mod:`dashboard.serve`)."""

import sys

from dashboard.serve import main

sys.exit(main())
