"""``python -m neuralgraph`` (also what ``torchrun -m neuralgraph`` runs)."""

import sys

from neuralgraph.cli import main

sys.exit(main())
