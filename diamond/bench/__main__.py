"""`python -m diamond.bench`."""

from diamond.bench import main

raise SystemExit(main())
