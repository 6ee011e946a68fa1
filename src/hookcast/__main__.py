from hookcast.cli import main

main()
