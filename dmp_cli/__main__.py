from dmp_cli.cli import main

main()
