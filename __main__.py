from deepprob.cli import main

raise SystemExit(main())
