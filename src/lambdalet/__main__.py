from lambdalet.cli.main import main

main()
