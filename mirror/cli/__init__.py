"""The `mirror` command: a module per subcommand, each with ``add(subparsers)``, ``run(args)``."""
