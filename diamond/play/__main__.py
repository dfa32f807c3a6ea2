"""`python -m diamond.play`."""

from diamond.play import main

raise SystemExit(main())
